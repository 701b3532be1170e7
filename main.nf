#!/usr/bin/env nextflow
/*
 * VirNucPro viral sequence classifier as a Nextflow pipeline.
 * Usage and every parameter: docs/usage.md; --help lists them (nf-schema).
 */

include { validate } from 'plugin/nf-schema'
include { PIPELINE; typedParams } from './subworkflows/local/utils_virnucpro_pipeline'

workflow {
    main:
    // the typed values, as strict-parser command lines give strings that nf-schema 2.5 would refuse
    validate(typedParams(params), "${projectDir}/nextflow_schema.json")
    PIPELINE(params)
}
