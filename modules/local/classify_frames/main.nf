process CLASSIFY_FRAMES {
    tag "${meta.shard}"
    label 'process_low'

    input:
    tuple val(meta), path(dnabert), path(esm)
    tuple path(classifier), path(models_json)   // the classifier and the models.json that records its sha256

    output:
    tuple val(meta), path("${meta.shard}.predictions.tsv"), emit: predictions
    tuple val(meta), path("${meta.shard}.classify.json"), emit: metrics
    tuple val("${task.process}"), val('virnucpro'), eval('classify_frames.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    """
    classify_frames.py --dnabert ${dnabert} --esm ${esm} --classifier '${classifier}' --models-json '${models_json}' --out ${meta.shard}.predictions.tsv --device cpu --metrics ${meta.shard}.classify.json ${args}
    """

    stub:
    """
    printf 'Sequence_ID\\tPrediction\\tscore1\\tscore2\\n' > ${meta.shard}.predictions.tsv
    touch ${meta.shard}.classify.json
    """
}
