process STAGE_MODELS {
    tag "${key}"
    label 'process_low'

    input:
    tuple val(key), val(chunk_size), val(dnabert), val(esm), val(classifier)
    path(local_dnabert, stageAs: 'local/dnabert/*')
    path(local_esm, stageAs: 'local/esm/*')
    path(local_classifier, stageAs: 'local/classifier/*')

    output:
    // file by file, never a folder: with --model_cache this task has a storeDir, into which
    // Nextflow moves each output with `mv`, and a folder moved onto the folder another run
    // staged at the same time fails ("Directory not empty"); an entry that lacks one of the
    // named files is staged again. Nextflow moves them in name order, so models.json and
    // versions.txt come after the model files. No eval output: a storeDir allows files only, and
    // stage_models.py writes its version into versions.txt.
    path("${key}/models.json"), emit: models_json
    path("${key}/versions.txt"), emit: versions
    path("${key}/checksums.sha256"), emit: checksums
    path("${key}/dnabert/*/*", arity: '0..*', emit: dnabert)
    path("${key}/esm/*", arity: '0..*', emit: esm)
    path("${key}/classifier/*", arity: '0..*', emit: classifier)

    script:
    def args = task.ext.args ?: ''
    def classifier_option = classifier ? "--classifier '${classifier}'" : ''
    """
    stage_models.py --outdir ${key} --chunk-size ${chunk_size} --dnabert '${dnabert}' --esm '${esm}' ${classifier_option} --threads ${task.cpus} ${args}
    """

    stub:
    """
    mkdir -p ${key}/dnabert/stub ${key}/esm ${key}/classifier
    touch ${key}/dnabert/stub/config.json ${key}/esm/esm2_stub.pt ${key}/classifier/stub.pth ${key}/checksums.sha256
    echo '{"dnabert": {"name": "stub", "path": "dnabert/stub", "sha256": "", "files": {}}, "esm": {"name": "esm2_stub", "path": "esm/esm2_stub.pt", "sha256": "", "files": {}}, "classifier": {"name": "stub.pth", "path": "classifier/stub.pth", "sha256": "", "files": {}}}' > ${key}/models.json
    echo 'virnucpro stub' > ${key}/versions.txt
    """
}
