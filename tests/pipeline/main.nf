#!/usr/bin/env nextflow
/*
 * The pipeline without the nf-schema plugin, which cannot be had offline: the run that CI
 * makes with the real Nextflow. Launched from the repository root, which loads its
 * nextflow.config, with the same parameters and profiles as main.nf:
 *     tests/nextflow/nextflow run tests/pipeline/main.nf -profile test --outdir DIR
 */

include { PIPELINE; typedParams } from '../../subworkflows/local/utils_virnucpro_pipeline'

workflow {
    main:
    PIPELINE(typedParams(params))
}
