#!/usr/bin/env nextflow
/*
 * VirNucPro viral sequence classifier as a Nextflow pipeline.
 * Usage and every parameter: docs/usage.md; --help lists them (nf-schema).
 */

include { validate } from 'plugin/nf-schema'
include { PIPELINE; typedParams } from './subworkflows/local/utils_virnucpro_pipeline'

workflow {
    main:
    // typed: the strict parser's command-line values are strings, which nf-schema 2.5 would refuse
    def run = typedParams(params)
    validate(run, "${projectDir}/nextflow_schema.json")
    PIPELINE(run)
}
