/*
 * VirNucPro: DNA chunks -> six-frame translation -> DNABERT-S + ESM-2 embeddings -> MLP calls.
 *
 * Per sample: PREPARE_FRAMES writes shards of frames; each shard is embedded by EMBED_DNABERT
 * (.fna) and EMBED_ESM (.faa) in parallel, then classified; SUMMARIZE meets all shards of a
 * sample (also when it has none) and MAKE_REPORT covers every sample of the run.
 */

include { STAGE_MODELS    } from '../modules/local/stage_models'
include { PREPARE_FRAMES  } from '../modules/local/prepare_frames'
include { EMBED_DNABERT   } from '../modules/local/embed_dnabert'
include { EMBED_ESM       } from '../modules/local/embed_esm'
include { CLASSIFY_FRAMES } from '../modules/local/classify_frames'
include { SUMMARIZE       } from '../modules/local/summarize'
include { MAKE_REPORT     } from '../modules/local/make_report'

workflow VIRNUCPRO {
    take:
    samples     // channel: [ meta, fasta ], meta = [id: sample]
    request     // value: model request, see modelRequest() in subworkflows/local/utils_virnucpro_pipeline
    run_info    // channel: run_info.json, the run as Nextflow knows it (for the report)

    main:
    STAGE_MODELS(
        [request.key, request.chunk_size, request.dnabert, request.esm, request.classifier],
        request.local_dnabert,
        request.local_esm,
        request.local_classifier,
    )
    // each model with the models.json whose checksums its tasks check it against
    models_json = STAGE_MODELS.out.models_json
    models = models_json.map { json -> stagedModels(json, request) }

    PREPARE_FRAMES(samples, request.chunk_size)

    shards = PREPARE_FRAMES.out.shards.flatMap { meta, fnas, faas -> pairShards(meta, fnas, faas) }
    EMBED_DNABERT(shards.map { meta, fna, _faa -> [meta, fna] }, models.map { model -> [model.dnabert, model.json] })
    EMBED_ESM(shards.map { meta, _fna, faa -> [meta, faa] }, models.map { model -> [model.esm, model.json] })
    CLASSIFY_FRAMES(EMBED_DNABERT.out.embeddings.join(EMBED_ESM.out.embeddings), models.map { model -> [model.classifier, model.json] })

    // all shards of a sample: groupKey knows how many to wait for
    per_sample = CLASSIFY_FRAMES.out.predictions
        .join(EMBED_DNABERT.out.metrics)
        .join(EMBED_ESM.out.metrics)
        .join(CLASSIFY_FRAMES.out.metrics)
        .map { meta, predictions, dnabert, esm, classify -> [groupKey(meta.id, meta.shards), predictions, [dnabert, esm, classify]] }
        .groupTuple()
        // sorted: the order in which shards finish must not change SUMMARIZE's inputs (-resume)
        .map { id, predictions, metrics -> [id.toString(), [byName(predictions), byName(metrics.flatten())]] }

    // samples without kept frames have no shard: remainder keeps them, with no predictions
    summary_input = samples.map { meta, fasta -> [meta.id, meta, fasta] }
        .join(PREPARE_FRAMES.out.tables.map { meta, shard_table, sequences -> [meta.id, shard_table, sequences] })
        .join(PREPARE_FRAMES.out.metrics.map { meta, metrics -> [meta.id, metrics] })
        .join(per_sample, remainder: true)
        .map { _id, meta, fasta, shard_table, sequences, prepare_metrics, shard_results ->
            def (predictions, shard_metrics) = shard_results ?: [[], []]
            [meta, fasta, shard_table, sequences, predictions, [prepare_metrics] + shard_metrics]
        }
    SUMMARIZE(summary_input, request.chunk_size)

    all_metrics = PREPARE_FRAMES.out.metrics.map { _meta, metrics -> metrics }
        .mix(EMBED_DNABERT.out.metrics.map { _meta, metrics -> metrics })
        .mix(EMBED_ESM.out.metrics.map { _meta, metrics -> metrics })
        .mix(CLASSIFY_FRAMES.out.metrics.map { _meta, metrics -> metrics })
    MAKE_REPORT(
        SUMMARIZE.out.results.map { _meta, results -> results }.toSortedList { a, b -> a.name <=> b.name },
        models_json,
        all_metrics.toSortedList { a, b -> a.name <=> b.name },
        run_info,
    )

    // emitted by name: Nextflow 25.04's strict parser loses `emit: name = value` (nf-lang 25.04.0)
    results = SUMMARIZE.out.results
    report = MAKE_REPORT.out.report
    mqc = MAKE_REPORT.out.mqc
    staging_version = STAGE_MODELS.out.versions

    emit:
    results         // channel: [ meta, folder of per-sample results ]
    report          // channel: report.html
    mqc             // channel: virnucpro_mqc.tsv
    models_json     // channel: models.json of the staged models
    staging_version // channel: versions.txt of STAGE_MODELS (a storeDir task reused runs no command)
}

/*
 * The staged models as process inputs, with their models.json. Fetched models: from
 * models.json, paths relative to its folder. The user's own files: the paths given (models.json
 * holds the path STAGE_MODELS saw inside its task, which is a copy in the task's scratch space
 * on cloud executors).
 */
def stagedModels(Path json, Map request) {
    def entries = new groovy.json.JsonSlurper().parseText(json.text)
    return [
        dnabert: request.local_dnabert ?: json.resolveSibling(entries.dnabert.path),
        esm: request.local_esm ?: json.resolveSibling(entries.esm.path),
        classifier: request.local_classifier ?: json.resolveSibling(entries.classifier.path),
        json: json,
    ]
}

/*
 * One item per shard: P.0001.fna with P.0001.faa. The shard meta keeps the sample ID and
 * carries the shard ID and the sample's shard count.
 */
def pairShards(Map meta, List fnas, List faas) {
    def fna = filesByShard(fnas)
    def faa = filesByShard(faas)
    if (fna.keySet() != faa.keySet()) {
        error("PREPARE_FRAMES of sample ${meta.id} wrote unpaired shards: ${(fna.keySet() + faa.keySet()) - fna.keySet().intersect(faa.keySet())}")
    }
    return fna.keySet().sort().collect { shard -> [meta + [shard: shard, shards: fna.size()], fna[shard], faa[shard]] }
}

def filesByShard(List files) {
    return files.collectEntries { file -> [file.baseName, file] }
}

def byName(List files) {
    return files.sort(false) { file -> file.name }
}
