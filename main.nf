#!/usr/bin/env nextflow
/*
 * VirNucPro viral sequence classifier as a Nextflow pipeline.
 * Usage and every parameter: docs/usage.md.
 */

include { validateParameters } from 'plugin/nf-schema'
include { VIRNUCPRO          } from './workflows/virnucpro'

workflow {
    main:
    validateParameters()
    if (!params.input) {
        error("--input is required: a FASTA file (plain or gzip), a glob of them, or a samplesheet CSV with columns sample,fasta")
    }
    if (!(params.chunk_size in [300, 500])) {
        error("--chunk_size must be 300 or 500, not ${params.chunk_size}: the published classifiers were trained on these chunk lengths")
    }
    VIRNUCPRO(
        inputSamples(params.input.toString()),
        modelRequest(params.dnabert_model, params.esm_model, params.classifier, params.chunk_size, params.tiny_models),
    )

    // a publishDir pattern cannot pick a file inside a declared output folder: copy it here
    VIRNUCPRO.out.models.collectFile(name: 'models.json', storeDir: "${params.outdir}/pipeline_info")

    channel.topic('versions')
        .unique()
        .map { process, tool, version -> "${process.tokenize(':').last()}:\n  ${tool}: '${version}'" }
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: true)
}

/*
 * [meta, fasta] per sample. A samplesheet (.csv) names each sample (column sample) and its
 * FASTA (column fasta: relative to the samplesheet's folder, absolute, or a URL); otherwise
 * --input is a FASTA file or a glob and each file is a sample named after it.
 */
def inputSamples(String input) {
    def samples = input.endsWith('.csv')
        ? channel.fromPath(input, checkIfExists: true).flatMap { sheet -> samplesheetRows(sheet) }
        : channel.fromPath(input, checkIfExists: true).map { fasta -> [sampleName(fasta), fasta] }
    return samples
        .toList()
        .flatMap { rows -> checkSamples(input, rows) }
}

def samplesheetRows(Path sheet) {
    return sheet.splitCsv(header: true, strip: true).withIndex().collect { row, index ->
        if (!row.sample || !row.fasta) {
            error("${sheet}: row ${index + 2} needs both columns sample and fasta")
        }
        def fasta = row.fasta ==~ /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/.*/ || row.fasta.startsWith('/') ? file(row.fasta) : sheet.parent.resolve(row.fasta)
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
    def duplicated = ids.countBy { id -> id }.findAll { _id, count -> count > 1 }.keySet()
    if (duplicated) {
        error("--input ${input}: sample names must be unique: ${duplicated.join(', ')}")
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
    def path = spec.toString() ==~ /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/.*/ ? null : file(spec.toString())
    return path?.exists() ? path : null
}
