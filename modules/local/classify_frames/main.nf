process CLASSIFY_FRAMES {
    tag "${meta.shard}"
    label 'process_low'

    input:
    // a frame shard with its sample's P.shards.tsv and every embedding file of the sample
    tuple val(meta), path(frames), path(shards), path(dnabert, arity: '1..*'), path(esm, arity: '1..*')
    tuple path(classifier), path(models_json)   // the classifier and the models.json that records its sha256

    output:
    tuple val(meta), path("${meta.shard}.predictions.tsv"), emit: predictions
    tuple val(meta), path("${meta.shard}.classify.json"), emit: metrics
    tuple val("${task.process}"), val('virnucpro'), eval('classify_frames.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    classify_frames.py --frames ${frames} --shards ${shards} --dnabert ${dnabert.join(' ')} --esm ${esm.join(' ')} --classifier '${classifier}' --models-json '${models_json}' --out ${meta.shard}.predictions.tsv --device cpu --metrics ${meta.shard}.classify.json --threads ${task.cpus} ${args}
    """

    stub:
    """
    printf 'Sequence_ID\\tPrediction\\tscore1\\tscore2\\n' > ${meta.shard}.predictions.tsv
    touch ${meta.shard}.classify.json
    """
}
