process PREPARE_FRAMES {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(fasta, stageAs: '_input/*')
    val(chunk_size)

    output:
    tuple val(meta), path("${meta.id}.*.fna", arity: '0..*'), path("${meta.id}.*.faa", arity: '0..*'), emit: shards
    tuple val(meta), path("${meta.id}.shards.tsv"), path("${meta.id}.sequences.tsv"), emit: tables
    tuple val(meta), path("${meta.id}.prepare_frames.json"), emit: metrics
    tuple val("${task.process}"), val('virnucpro'), eval('prepare_frames.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    prepare_frames.py --fasta '${fasta}' --chunk-size ${chunk_size} --prefix ${meta.id} --metrics ${meta.id}.prepare_frames.json ${args}
    """

    stub:
    """
    touch ${meta.id}.0001.fna ${meta.id}.0001.faa ${meta.id}.prepare_frames.json
    printf 'shard\\tframes\\ttokens\\tfirst_id\\tlast_id\\tids_sha256\\n${meta.id}.0001\\t0\\t0\\t\\t\\t\\n' > ${meta.id}.shards.tsv
    printf 'record\\tsequence_id\\tinput_id\\tlength\\tchunks\\tframes\\tstatus\\treason\\tdigest\\n' > ${meta.id}.sequences.tsv
    """
}
