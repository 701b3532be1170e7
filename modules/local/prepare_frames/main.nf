process PREPARE_FRAMES {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(fasta, stageAs: '_input/*')
    val(chunk_size)

    output:
    // per kind of shard: every frame with the numbers of its sequences; the distinct nucleotide
    // and protein sequences, each once, for DNABERT-S and ESM-2
    tuple val(meta), path("${meta.id}.*.frames.tsv", arity: '0..*'), emit: frames
    tuple val(meta), path("${meta.id}.dnabert.*.fna", arity: '0..*'), emit: dnabert
    tuple val(meta), path("${meta.id}.esm.*.faa", arity: '0..*'), emit: esm
    tuple val(meta), path("${meta.id}.shards.tsv"), path("${meta.id}.sequences.tsv"), emit: tables
    tuple val(meta), path("${meta.id}.prepare_frames.json"), emit: metrics
    tuple val("${task.process}"), val('virnucpro'), eval('prepare_frames.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    prepare_frames.py --fasta '${fasta}' --chunk-size ${chunk_size} --prefix ${meta.id} --metrics ${meta.id}.prepare_frames.json --threads ${task.cpus} ${args}
    """

    stub:
    """
    touch ${meta.id}.0001.frames.tsv ${meta.id}.dnabert.0001.fna ${meta.id}.esm.0001.faa ${meta.id}.prepare_frames.json
    printf 'shard\\tkind\\titems\\ttokens\\tfirst_id\\tlast_id\\tids_sha256\\tdnabert_start\\tesm_start\\n' > ${meta.id}.shards.tsv
    printf 'record\\tsequence_id\\tinput_id\\tlength\\tchunks\\tframes\\tstatus\\treason\\tdigest\\n' > ${meta.id}.sequences.tsv
    """
}
