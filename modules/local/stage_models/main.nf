process STAGE_MODELS {
    tag "${key}"
    label 'process_low'

    input:
    tuple val(key), val(chunk_size), val(dnabert), val(esm), val(classifier)
    path(local_dnabert, stageAs: 'local/dnabert/*')
    path(local_esm, stageAs: 'local/esm/*')
    path(local_classifier, stageAs: 'local/classifier/*')

    output:
    // no eval output: with --model_cache this task has a storeDir, which allows files only;
    // stage_models.py writes its version into the folder (versions.txt)
    path("${key}"), emit: models

    script:
    def args = task.ext.args ?: ''
    def classifier_option = classifier ? "--classifier ${classifier}" : ''
    """
    stage_models.py --outdir ${key} --chunk-size ${chunk_size} --dnabert ${dnabert} --esm ${esm} ${classifier_option} --threads ${task.cpus} ${args}
    """

    stub:
    """
    mkdir -p ${key}/dnabert/stub ${key}/esm ${key}/classifier
    touch ${key}/esm/esm2_stub.pt ${key}/esm/esm2_stub-contact-regression.pt ${key}/classifier/stub.pth
    echo '{"dnabert": {"name": "stub", "path": "dnabert/stub", "sha256": ""}, "esm": {"name": "esm2_stub", "path": "esm/esm2_stub.pt", "sha256": ""}, "classifier": {"name": "stub.pth", "path": "classifier/stub.pth", "sha256": ""}}' > ${key}/models.json
    echo 'virnucpro stub' > ${key}/versions.txt
    """
}
