/*
 * Initialisation and completion of a run, shared by the pipeline's two entries: main.nf (with
 * nf-schema's validation and --help) and tests/pipeline/main.nf (the same run without the
 * plugin, which CI runs offline).
 */

include { VIRNUCPRO       } from '../../../workflows/virnucpro'
include { PUBLISH_RESULTS; checkOutdir; writeWhole } from '../publish_results'

/*
 * The whole run: inputs resolved and --outdir checked before any task starts, the workflow run,
 * and its results and run information published into --outdir.
 */
workflow PIPELINE {
    take:
    run     // params, typed and checked against nextflow_schema.json (typedParams)

    main:
    if (!run.input) {
        error("--input is required: a FASTA file (plain or gzip), a glob of them, or a samplesheet CSV with columns sample,fasta")
    }
    // read here, not in a channel: a refused input stops the run with its one error, before any task
    def input = run.input.toString()
    def samples = inputSamples(input)
    def outdir = file(run.outdir.toString())
    checkOutdir(outdir, samples, isSamplesheet(input) ? file(input) : null)
    writeParams(outdir.resolve("pipeline_info/params_${run.trace_report_suffix}.json"), run)

    VIRNUCPRO(
        channel.fromList(samples.collect { sample -> [[id: sample.id], sample.fasta] }),
        modelRequest(run.dnabert_model, run.esm_model, run.classifier, run.chunk_size, run.tiny_models),
        // what only Nextflow knows of the run, for the report's run section
        channel.value(runInfoFile(run)),
    )

    // a STAGE_MODELS task reused by storeDir runs no command (and storeDir allows no eval
    // output): stage_models.py writes its version beside models.json
    def staging_version = VIRNUCPRO.out.staging_version.map { text -> ['STAGE_MODELS', 'virnucpro', text.text.trim()] }
    // MultiQC's software versions format (a *_mqc_versions.yml file): process -> {tool: version}
    def versions = channel.topic('versions')
        .mix(staging_version)
        .unique()
        .map { process, _tool, tool_versions -> versionsYaml(process.tokenize(':').last(), toolVersions(tool_versions)) }
        .mix(channel.of(versionsYaml('Workflow', [(workflow.manifest.name): workflow.manifest.version, Nextflow: nextflow.version.toString()])))
        .collectFile(name: 'virnucpro_software_mqc_versions.yml', sort: true, newLine: true)
    PUBLISH_RESULTS(outdir, VIRNUCPRO.out.results, VIRNUCPRO.out.report, VIRNUCPRO.out.mqc, VIRNUCPRO.out.models_json, versions)
}

/*
 * run_info.json under the work folder, written by the first launch of a session with these
 * parameters and read by every -resume of it: MAKE_REPORT's inputs stay the same, so a resumed
 * run with nothing new to do reruns no task, the report included. Where the records go (outdir,
 * trace_report_suffix) is left out: it changes no result (pipeline_info/params_*.json has it).
 */
def runInfoFile(Map run) {
    def shaping = run.findAll { name, _value -> !(name in ['outdir', 'trace_report_suffix']) }
    def key = groovy.json.JsonOutput.toJson(plainValues(shaping)).md5().take(16)
    def target = workflow.workDir.resolve("virnucpro-run/${workflow.sessionId}-${key}/run_info.json")
    if (!target.exists()) {
        writeWhole(target) { path -> path.text = runInfo(shaping) }
    }
    return target
}

/*
 * The run as Nextflow knows it, as JSON for make_report.py --run-info: its start, command line,
 * versions and parameters.
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
        params: plainValues(run),
    ]
    return groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(info))
}

// null, numbers and booleans as they are, anything else as text
def plainValues(Map run) {
    return run.sort().collectEntries { name, value -> [name, value == null || value instanceof Number || value instanceof Boolean ? value : value.toString()] }
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
 * The parameters with the types nextflow_schema.json gives them, checked against its enum,
 * pattern, minimum and maximum: the plugin-free entry refuses what nf-schema refuses, and both
 * entries refuse before any task starts. Nextflow's strict parser (the default from 26.04)
 * passes every command-line value as a string ('300', 'false').
 */
def typedParams(Map given) {
    def specs = schemaParams()
    return given.collectEntries { name, value ->
        def spec = specs[name] ?: [:]
        def typed = typedValue(name, value, spec.type)
        checkValue(name, typed, spec)
        [name, typed]
    }
}

def schemaParams() {
    def schema = new groovy.json.JsonSlurper().parse(file("${moduleDir}/../../../nextflow_schema.json").toFile())
    return schema['$defs'].values().collectEntries { group -> group.properties }
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

def checkValue(String name, value, Map spec) {
    if (value == null || value instanceof Boolean) {
        return
    }
    def problem = null
    if (spec['enum'] != null && !(value in spec['enum'])) {
        problem = "must be one of ${spec['enum'].join(', ')}"
    }
    else if (spec.pattern && !java.util.regex.Pattern.compile(spec.pattern).matcher(value.toString()).find()) {
        problem = "must match ${spec.pattern}"
    }
    else if (spec.minimum != null && value instanceof Number && value < spec.minimum) {
        problem = "must be at least ${spec.minimum}"
    }
    else if (spec.maximum != null && value instanceof Number && value > spec.maximum) {
        problem = "must be at most ${spec.maximum}"
    }
    if (problem) {
        error("--${name} ${value instanceof CharSequence ? "'${value}'" : value}: ${spec.errorMessage ?: problem}")
    }
}

/*
 * The run's parameters as the run uses them, to pipeline_info/params_<trace_report_suffix>.json
 * (never over an existing file: each launch has its own).
 */
def writeParams(Path target, Map run) {
    if (target.exists()) {
        error("--outdir: ${target.toUriString()} exists: each launch writes its own parameters file (give another --trace_report_suffix)")
    }
    writeWhole(target) { path -> path.text = groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(run.sort())) + '\n' }
}

/*
 * The samples of --input, sorted by name, each [id, fasta, where] (where: what an error names).
 * A samplesheet (.csv) names each sample (column sample) and its FASTA (column fasta: relative to
 * the samplesheet's folder, absolute, or a URL); otherwise --input is a FASTA file or a glob and
 * each file is a sample named after it.
 */
def inputSamples(String input) {
    def samples = isSamplesheet(input) ? samplesheetSamples(input) : fastaSamples(input)
    def seen = [:]
    samples.each { sample ->
        checkSample(sample)
        def key = sample.id.toLowerCase()
        if (seen.containsKey(key)) {
            error("${sample.where}: sample name '${sample.id}' is taken (${seen[key].where}): names must be unique, ignoring case as some file systems do")
        }
        seen[key] = sample
    }
    return samples.sort { sample -> sample.id }
}

def isSamplesheet(String input) {
    return input.toLowerCase().endsWith('.csv')
}

def fastaSamples(String input) {
    def found = files(input)
    if (!found || !found.every { fasta -> fasta.exists() }) {
        error("--input ${input}: ${input =~ /[*?\[{]/ ? 'no file matches it' : 'no such file'}")
    }
    return found.collect { fasta -> [id: sampleName(fasta), fasta: fasta, where: "--input ${input}: ${fasta.toUriString()}"] }
}

def sampleName(Path fasta) {
    return fasta.name.replaceFirst(/\.gz$/, '').replaceFirst(/\.(fa|fasta|fna|fas|fsa)$/, '')
}

/*
 * The rows of a samplesheet, read with Nextflow's CSV parser (the one splitCsv uses), double
 * quotes as RFC 4180 has them, line by line so that each error names its row (its line number).
 */
def samplesheetSamples(String input) {
    def sheet = file(input)
    def shown = sheet.toUriString()
    if (!sheet.exists()) {
        error("--input ${shown}: no such file")
    }
    if (sheet.isDirectory()) {
        error("--input ${shown}: is a folder, not a samplesheet")
    }
    def rows = []
    sheet.getText('UTF-8').replaceFirst(/^\uFEFF/, '').readLines().eachWithIndex { line, index ->
        if (line.trim()) {
            rows << [number: index + 1, fields: csvFields(line, "${shown}: row ${index + 1}")]
        }
    }
    if (!rows) {
        error("${shown}: empty samplesheet: it needs a header row sample,fasta and one row per sample")
    }
    def header = rows[0].fields
    def columns = ['sample', 'fasta'].collectEntries { name -> [name, header.findIndexValues { column -> column == name }] }
    def wrong = columns.findAll { _name, found -> found.size() != 1 }
    if (wrong) {
        error("${shown}: row ${rows[0].number}: the header must name the columns sample and fasta once each (it has: ${header.join(', ')})")
    }
    if (rows.size() == 1) {
        error("${shown}: no samples: the samplesheet has a header row but no row below it")
    }
    return rows.drop(1).collect { row ->
        def where = "${shown}: row ${row.number}"
        // more fields than the header only as empty trailing ones (as spreadsheets write them)
        if (row.fields.drop(header.size()).any { field -> field }) {
            error("${where}: ${row.fields.size()} fields, but the header has ${header.size()}")
        }
        def id = row.fields[columns.sample[0]]
        def fasta = row.fields[columns.fasta[0]]
        if (!id || !fasta) {
            error("${where}: the ${id ? 'fasta' : 'sample'} column is empty")
        }
        [id: id, fasta: samplesheetFasta(sheet, fasta, where), where: where]
    }
}

def csvFields(String line, String where) {
    try {
        return new nextflow.util.CsvParser().setQuote('"').setStrip(true).parse(line)
    }
    catch (IllegalStateException _error) {
        error("${where}: not valid CSV (a double quote that does not close a quoted field): ${line.take(200)}")
    }
}

def samplesheetFasta(Path sheet, String text, String where) {
    def fasta = isUrl(text) || text.startsWith('/') ? file(text) : sheet.resolveSibling(text)
    def shown = isUrl(text) ? text : fasta.toUriString()
    if (!fasta.exists()) {
        error("${where}: FASTA file ${shown} does not exist")
    }
    if (fasta.isDirectory()) {
        error("${where}: ${shown} is a folder, not a FASTA file")
    }
    return fasta
}

def checkSample(Map sample) {
    if (!(sample.id ==~ /[A-Za-z0-9][A-Za-z0-9._-]*/)) {
        error("${sample.where}: sample name '${sample.id}' may hold only letters, digits, '.', '_' and '-', and starts with a letter or digit (it names the output folder)")
    }
    // names at the top of --outdir, and beside the sample folders in MAKE_REPORT's task
    def outputs = ['pipeline_info', 'report.html', 'virnucpro_mqc.tsv', 'models.json']
    if (sample.id.toLowerCase() in outputs) {
        error("${sample.where}: sample name '${sample.id}' would clash with the run's own outputs (${outputs.join(', ')}): rename it")
    }
    // the tasks' command lines carry the staged file name in single quotes, and Nextflow stages
    // it with a command that leaves '$' to the shell
    if (sample.fasta.name =~ /['$`\p{Cntrl}]/) {
        error("${sample.where}: the FASTA file name ${sample.fasta.name} holds a quote, '\$', '`' or a control character, which the tasks' command lines cannot carry: rename the file")
    }
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
    // 'files': entries staged file by file with each file's sha256 in models.json; an entry of
    // the earlier layout (one folder output, no per-file checksums) is not reused
    def choice = [dnabert_model, esm_model, classifier_model ?: 'published', chunk_size, tiny_models, 'files']
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
