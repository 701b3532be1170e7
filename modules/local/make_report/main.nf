process MAKE_REPORT {
    label 'process_low'

    input:
    path(samples, arity: '1..*')   // one results folder per sample, named after it
    path(models)
    path(metrics, stageAs: '_metrics/*', arity: '1..*')   // '_': no sample folder has that name
    path(run_info, stageAs: '_run/*')   // what Nextflow knows of the run: start, command line, versions, parameters

    output:
    path("report.html"), emit: report
    path("virnucpro_mqc.tsv"), emit: mqc
    tuple val("${task.process}"), val('virnucpro'), eval('make_report.py --version'), topic: versions

    script:
    def args = task.ext.args ?: ''
    def calls = samples.collect { sample -> "${sample}/sequence_calls.tsv" }.join(' ')
    """
    make_report.py --calls ${calls} --models ${models} --out report.html --mqc virnucpro_mqc.tsv --metrics ${metrics.join(' ')} --run-info ${run_info} --threads ${task.cpus} ${args}
    """

    stub:
    """
    echo '<!DOCTYPE html><html><head><title>VirNucPro report</title></head></html>' > report.html
    echo '# id: "virnucpro"' > virnucpro_mqc.tsv
    """
}
