process EMBED_ESM {
    tag "${meta.shard}"
    label 'process_gpu'

    input:
    tuple val(meta), path(faa)
    tuple path(checkpoint), path(models_json)   // the model and the models.json that records its files' sha256

    output:
    tuple val(meta), path("${meta.shard}.h5"), emit: embeddings
    tuple val(meta), path("${meta.shard}.embed.json"), emit: metrics
    tuple val("${task.process}"), val('virnucpro'), eval('embed_esm.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.accelerator ? (task.ext.device ?: 'cuda') : 'cpu'
    """
    embed_esm.py --fasta '${faa}' --model '${checkpoint}' --models-json '${models_json}' --out ${meta.shard}.h5 --device ${device} --metrics ${meta.shard}.embed.json --threads ${task.cpus} ${args}
    """

    stub:
    """
    touch ${meta.shard}.h5 ${meta.shard}.embed.json
    """
}
