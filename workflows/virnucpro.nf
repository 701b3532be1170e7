/*
 * VirNucPro: DNA chunks -> six-frame translation -> DNABERT-S + ESM-2 embeddings -> MLP calls.
 *
 * Per sample: PREPARE_FRAMES writes shards of the sample's distinct nucleotide sequences (.fna)
 * and distinct proteins (.faa), which EMBED_DNABERT and EMBED_ESM embed in parallel, each
 * sequence once, and shards of frames; once a sample's embeddings are all in, CLASSIFY_FRAMES
 * scores each frame shard with them; SUMMARIZE meets all frame shards of a sample (also when it
 * has none) and MAKE_REPORT covers every sample of the run.
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

    // each distinct nucleotide and protein sequence of a sample is embedded once, in shards of its own
    EMBED_DNABERT(PREPARE_FRAMES.out.dnabert.flatMap { meta, files -> shardItems(meta, files) }, models.map { model -> [model.dnabert, model.json] })
    EMBED_ESM(PREPARE_FRAMES.out.esm.flatMap { meta, files -> shardItems(meta, files) }, models.map { model -> [model.esm, model.json] })
    // all embedding shards of a sample (groupKey knows how many), sorted: the order in which they
    // finish must not change a task's inputs (-resume)
    dnabert_per_sample = perSample(EMBED_DNABERT.out.embeddings.join(EMBED_DNABERT.out.metrics))
    esm_per_sample = perSample(EMBED_ESM.out.embeddings.join(EMBED_ESM.out.metrics))

    // each frame shard is scored with the vectors of its frames' sequences, from any of the sample's embedding files
    classify_input = PREPARE_FRAMES.out.frames.flatMap { meta, files -> shardItems(meta, files) }
        .map { meta, frames -> [meta.id, meta, frames] }
        .combine(PREPARE_FRAMES.out.tables.map { meta, shard_table, _sequences -> [meta.id, shard_table] }, by: 0)
        .combine(dnabert_per_sample, by: 0)
        .combine(esm_per_sample, by: 0)
        .map { _id, meta, frames, shard_table, dnabert, _dnabert_metrics, esm, _esm_metrics -> [meta, frames, shard_table, dnabert, esm] }
    CLASSIFY_FRAMES(classify_input, models.map { model -> [model.classifier, model.json] })

    per_sample = perSample(CLASSIFY_FRAMES.out.predictions.join(CLASSIFY_FRAMES.out.metrics))
        .join(dnabert_per_sample)
        .join(esm_per_sample)
        .map { id, predictions, classify, _dnabert, dnabert_metrics, _esm, esm_metrics ->
            [id, [predictions, byName(classify + dnabert_metrics + esm_metrics)]]
        }

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
 * One item per shard file (P.0001.frames.tsv, P.dnabert.0001.fna, P.esm.0001.faa): the shard
 * meta keeps the sample ID and carries the shard's name and how many shards of its kind the
 * sample has.
 */
def shardItems(Map meta, List files) {
    return byName(files).collect { file -> [meta + [shard: file.name.replaceAll(/\.(frames\.tsv|fna|faa)$/, ''), shards: files.size()], file] }
}

/*
 * [sample ID, files, metrics] once every shard of the sample has its output, each list sorted
 * by name, from [meta, file, metrics] per shard.
 */
def perSample(ch) {
    return ch
        .map { meta, file, metrics -> [groupKey(meta.id, meta.shards), file, metrics] }
        .groupTuple()
        .map { id, files, metrics -> [id.toString(), byName(files), byName(metrics)] }
}

def byName(List files) {
    return files.sort(false) { file -> file.name }
}
