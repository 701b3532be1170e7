#!/usr/bin/env nextflow
/*
 * The pipeline's own Groovy functions (checking the parameters, reading --input, checking and
 * publishing into --outdir)
 * called one by one in the real Nextflow runtime, for the tests of cases that a whole run cannot
 * reach cheaply (a JVM that dies between two renames, an object store's copy order, many
 * samplesheets in one launch). --calls names a JSON file: a list of [function, arguments...];
 * each call prints one line, {"index", "result"} or {"index", "error"}:
 *     tests/nextflow/nextflow run tests/pipeline/functions.nf --calls calls.json
 */

include { inputSamples; isSamplesheet; typedParams } from '../../subworkflows/local/utils_virnucpro_pipeline'
include { checkOutdir; copySummaryLast; publishResultSet; recoverResultSet } from '../../subworkflows/local/publish_results'

workflow {
    main:
    def calls = new groovy.json.JsonSlurper().parse(file(params.calls).toFile())
    calls.eachWithIndex { call, index ->
        def line = [index: index]
        try {
            line.result = callFunction(call[0], call.drop(1))
        }
        catch (Exception failure) {
            // an included function's error() arrives wrapped by the reflective call
            line.error = unwrapped(failure).message
        }
        println("CALL ${groovy.json.JsonOutput.toJson(line)}")
    }
}

def callFunction(String name, List arguments) {
    if (name == 'inputSamples') {
        return inputSamples(arguments[0]).collect { sample -> [id: sample.id, fasta: sample.fasta.toUriString()] }
    }
    if (name == 'typedParams') {
        return typedParams(arguments[0])
    }
    if (name == 'checkOutdir') {
        // the samples of --input arguments[1] checked against --outdir arguments[0]
        def input = arguments[1]
        checkOutdir(file(arguments[0]), inputSamples(input), isSamplesheet(input) ? file(input) : null)
        return 'ok'
    }
    if (name == 'publishResultSet') {
        return publishResultSet(file(arguments[0]), file(arguments[1])).toUriString()
    }
    if (name == 'copySummaryLast') {
        copySummaryLast(file(arguments[0]).listFiles().toList().sort { path -> path.name }, file(arguments[1]))
        return 'ok'
    }
    if (name == 'recoverResultSet') {
        recoverResultSet(file(arguments[0]))
        return 'ok'
    }
    error("no such function: ${name}")
}

def unwrapped(Throwable failure) {
    return failure instanceof java.lang.reflect.InvocationTargetException && failure.cause ? unwrapped(failure.cause) : failure
}
