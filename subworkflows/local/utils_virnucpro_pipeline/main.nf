/*
 * Initialisation and completion of a run, shared by the pipeline's two entries: main.nf (with
 * nf-schema's validation and --help) and tests/pipeline/main.nf (the same run without the
 * plugin, which CI runs offline).
 */

include { VIRNUCPRO } from '../../../workflows/virnucpro'

/*
 * The whole run: parameters typed, inputs resolved, the workflow run and its run information
 * written to --outdir/pipeline_info.
 */
workflow PIPELINE {
    take:
    run     // params, typed as nextflow_schema.json gives them (typedParams)

    main:
    if (!run.input) {
        error("--input is required: a FASTA file (plain or gzip), a glob of them, or a samplesheet CSV with columns sample,fasta")
    }
    if (!(run.chunk_size in [300, 500])) {
        error("--chunk_size must be 300 or 500, not ${run.chunk_size}: the published classifiers were trained on these chunk lengths")
    }
    // [meta, fasta] per sample. A samplesheet (.csv) names each sample (column sample) and its
    // FASTA (column fasta: relative to the samplesheet's folder, absolute, or a URL); otherwise
    // --input is a FASTA file or a glob and each file is a sample named after it.
    // The checks run in map, not flatMap: flatMap reports a function's error() as an
    // InvocationTargetException, without its message.
    def input = run.input.toString()
    def samples = input.endsWith('.csv')
        ? channel.fromPath(input, checkIfExists: true).map { sheet -> samplesheetRows(sheet) }.flatMap()
        : channel.fromPath(input, checkIfExists: true).map { fasta -> [sampleName(fasta), fasta] }
    VIRNUCPRO(
        samples.toSortedList { a, b -> a[0] <=> b[0] }.map { rows -> checkSamples(input, rows) }.flatMap(),
        modelRequest(run.dnabert_model, run.esm_model, run.classifier, run.chunk_size, run.tiny_models),
        // what only Nextflow knows of the run, for the report's run section
        channel.of(runInfo(run)).collectFile(name: 'run_info.json'),
    )

    // a publishDir pattern cannot pick a file inside a declared output folder: copy it here
    VIRNUCPRO.out.models_json.collectFile(name: 'models.json', storeDir: "${run.outdir}/pipeline_info")

    // a STAGE_MODELS task reused by storeDir runs no command (and storeDir allows no eval
    // output): stage_models.py writes its version beside models.json
    def staging_version = VIRNUCPRO.out.models_json.map { json -> ['STAGE_MODELS', 'virnucpro', json.resolveSibling('versions.txt').text.trim()] }
    // MultiQC's software versions format (a *_mqc_versions.yml file): process -> {tool: version}
    channel.topic('versions')
        .mix(staging_version)
        .unique()
        .map { process, _tool, versions -> versionsYaml(process.tokenize(':').last(), toolVersions(versions)) }
        .mix(channel.of(versionsYaml('Workflow', [(workflow.manifest.name): workflow.manifest.version, Nextflow: nextflow.version.toString()])))
        .collectFile(name: 'virnucpro_software_mqc_versions.yml', storeDir: "${run.outdir}/pipeline_info", sort: true, newLine: true)
}

/*
 * The run as Nextflow knows it, as JSON for make_report.py --run-info: its start, command line,
 * versions and parameters (plain values; anything else as text).
 */
def runInfo(Map run) {
    def info = [
        pipeline: workflow.manifest.name,
        pipeline_version: workflow.manifest.version,
        nextflow_version: nextflow.version.toString(),
        run_name: workflow.runName,
        profile: workflow.profile,
        command_line: workflow.commandLine,
        started: workflow.start.toString(),
        params: run.collectEntries { name, value -> [name, value == null || value instanceof Number || value instanceof Boolean ? value : value.toString()] },
    ]
    return groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(info))
}

/*
 * The tools and versions of a bin script's --version line: 'virnucpro 0.1.0; python 3.11.7; ...'.
 */
def toolVersions(String line) {
    return line.tokenize(';').collect { part -> part.trim() }.findAll { part -> part }.collectEntries { part ->
        def space = part.lastIndexOf(' ')
        space > 0 ? [part.substring(0, space), part.substring(space + 1)] : [part, '']
    }
}

def versionsYaml(String group, Map versions) {
    // versions quoted (as JSON strings, which YAML reads): 1.10 must not become the number 1.1
    return "${group}:\n" + versions.collect { tool, version -> "  ${tool}: ${groovy.json.JsonOutput.toJson(version.toString())}" }.join('\n')
}

/*
 * The parameters with the types nextflow_schema.json gives them. Nextflow's strict parser
 * (the default from 26.04) passes every command-line value as a string ('300', 'false').
 */
def typedParams(Map given) {
    def types = schemaTypes()
    return given.collectEntries { name, value -> [name, typedValue(name, value, types[name])] }
}

def schemaTypes() {
    def schema = new groovy.json.JsonSlurper().parse(file("${moduleDir}/../../../nextflow_schema.json").toFile())
    return schema['$defs'].values().collectEntries { group -> group.properties.collectEntries { name, spec -> [name, spec.type] } }
}

def typedValue(String name, value, type) {
    if (!(value instanceof CharSequence) || !(type in ['integer', 'number', 'boolean'])) {
        return value
    }
    def text = value.toString().trim()
    if (type == 'integer' && text ==~ /[+-]?\d+/) {
        return text.isInteger() ? text.toInteger() : text.toLong()
    }
    if (type == 'number' && text.isBigDecimal()) {
        return text.toBigDecimal()
    }
    if (type == 'boolean' && text.toLowerCase() in ['true', 'false']) {
        return text.toLowerCase() == 'true'
    }
    error("--${name} must be ${type == 'integer' ? 'an integer' : type == 'number' ? 'a number' : 'true or false'}, not '${value}'")
}

def samplesheetRows(Path sheet) {
    return sheet.splitCsv(header: true, strip: true).withIndex().collect { row, index ->
        if (!row.sample || !row.fasta) {
            error("${sheet}: row ${index + 2} needs both columns sample and fasta")
        }
        def fasta = isUrl(row.fasta) || row.fasta.startsWith('/') ? file(row.fasta) : sheet.parent.resolve(row.fasta)
        if (!fasta.exists()) {
            error("${sheet}: row ${index + 2}: FASTA file ${fasta} does not exist")
        }
        return [row.sample, fasta]
    }
}

def sampleName(Path fasta) {
    return fasta.name.replaceFirst(/\.gz$/, '').replaceFirst(/\.(fa|fasta|fna|fas|fsa)$/, '')
}

def checkSamples(String input, List rows) {
    if (!rows) {
        error("--input ${input}: no FASTA file found")
    }
    def ids = rows.collect { row -> row[0] }
    def bad = ids.findAll { id -> !(id ==~ /[A-Za-z0-9][A-Za-z0-9._-]*/) }
    if (bad) {
        error("--input ${input}: sample names may hold only letters, digits, '.', '_' and '-' (they name output folders): ${bad.join(', ')}")
    }
    // names at the top of --outdir, and beside the sample folders in MAKE_REPORT's task
    def outputs = ['pipeline_info', 'report.html', 'virnucpro_mqc.tsv', 'models.json']
    def reserved = ids.findAll { id -> id.toLowerCase() in outputs }
    if (reserved) {
        error("--input ${input}: sample names ${reserved.join(', ')} would clash with the run's own outputs (${outputs.join(', ')}): rename them")
    }
    def duplicated = ids.countBy { id -> id.toLowerCase() }.findAll { _id, count -> count > 1 }.keySet()
    if (duplicated) {
        error("--input ${input}: sample names must be unique (ignoring case, as on some file systems): ${duplicated.join(', ')}")
    }
    return rows.collect { id, fasta -> [[id: id], fasta] }
}

/*
 * What STAGE_MODELS is asked for. A model given as an existing local path is staged into the
 * task (and used in place); anything else is a name to download. The key names the staged
 * folder: with --model_cache it is the cache entry, so a different choice of models never
 * reuses another's files.
 */
def modelRequest(dnabert_model, esm_model, classifier_model, chunk_size, tiny_models) {
    def dnabert = localModel(dnabert_model)
    def esm = localModel(esm_model)
    def classifier = classifier_model ? localModel(classifier_model) : null
    def choice = [dnabert_model, esm_model, classifier_model ?: 'published', chunk_size, tiny_models]
    return [
        key: "virnucpro-models-${chunk_size}-${choice.join('|').md5().take(12)}",
        chunk_size: chunk_size,
        dnabert: dnabert ? "local/dnabert/${dnabert.name}" : dnabert_model,
        esm: esm ? "local/esm/${esm.name}" : esm_model,
        classifier: classifier ? "local/classifier/${classifier.name}" : (classifier_model ?: ''),
        local_dnabert: dnabert ?: [],
        local_esm: esm ?: [],
        local_classifier: classifier ?: [],
    ]
}

def localModel(spec) {
    def path = isUrl(spec.toString()) ? null : file(spec.toString())
    return path?.exists() ? path : null
}

def isUrl(String spec) {
    return spec ==~ /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/.*/
}
