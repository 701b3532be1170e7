process SUMMARIZE {
    tag "${meta.id}"
    label 'process_low'

    input:
    // staging folders start with '_', which no sample name (the output folder) can
    tuple val(meta), path(fasta, stageAs: '_input/*'), path(shards), path(sequences), path(predictions, stageAs: '_predictions/*', arity: '0..*'), path(metrics, stageAs: '_metrics/*', arity: '1..*')
    val(chunk_size)   // PREPARE_FRAMES's: sequences shorter than it are flagged shorter_than_chunk

    output:
    tuple val(meta), path("${meta.id}"), emit: results
    tuple val("${task.process}"), val('virnucpro'), eval('summarize.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    // a sample without any kept frame has no shard and therefore no predictions
    def prediction_option = predictions ? "--predictions ${predictions.join(' ')}" : ''
    """
    summarize.py --sample ${meta.id} ${prediction_option} --shards ${shards} --sequences ${sequences} --fasta '${fasta}' --outdir ${meta.id} --chunk-size ${chunk_size} --metrics ${metrics.join(' ')} --threads ${task.cpus} ${args}
    """

    stub:
    """
    mkdir ${meta.id}
    touch ${meta.id}/prediction_results.txt ${meta.id}/prediction_results_highestscore.csv ${meta.id}/viral_sequences.fasta
    printf 'sample\\tsequence_id\\tcall\\n' > ${meta.id}/sequence_calls.tsv
    echo '{"sample": "${meta.id}", "files": {}}' > ${meta.id}/summary.json
    """
}
