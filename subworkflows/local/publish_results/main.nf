/*
 * Publishing into --outdir, done by the pipeline itself on the head node instead of publishDir.
 * publishDir replaces an existing folder of the same name whole (with whatever the user kept in
 * it) and copies file by file, so a failure half way leaves two result sets mixed. Here:
 * - nothing this pipeline did not write is replaced: a sample folder must hold only the five
 *   files of a result set (and a summary.json of this pipeline's); report.html, virnucpro_mqc.tsv,
 *   models.json and the software versions must be ours (checked at start and again before each
 *   copy);
 * - on a local or shared file system a sample's new set is copied into a hidden folder beside
 *   its target and swapped in by two renames (old set aside, new set in, old set removed), so a
 *   failure leaves the old set or the new one; a set left aside by a run that died between the
 *   renames is put back at the next start (recoverResultSet);
 * - on an object store, which has no renames, the old summary.json is removed first and the new
 *   one copied last: a set is complete only when its summary.json is there and every file has
 *   the SHA-256 it lists (make_report.py checks sequence_calls.tsv against it).
 * Paths go through Nextflow's file system layer, so --outdir may be local, shared or s3://, gs://.
 */

workflow PUBLISH_RESULTS {
    take:
    outdir          // value: Path of --outdir
    results         // channel: [ meta, folder of per-sample results ]
    report          // channel: report.html
    mqc             // channel: virnucpro_mqc.tsv
    models_json     // channel: models.json
    versions        // channel: virnucpro_software_mqc_versions.yml

    main:
    def info = outdir.resolve('pipeline_info')
    // map, not subscribe: the run waits for every copy, and a failure ends it with its message
    published = results.map { meta, folder -> publishResultSet(folder, outdir.resolve(meta.id)) }
        .mix(report.map { file -> publishFile(file, outdir.resolve('report.html')) })
        .mix(mqc.map { file -> publishFile(file, outdir.resolve('virnucpro_mqc.tsv')) })
        .mix(models_json.map { file -> publishFile(file, info.resolve('models.json')) })
        .mix(versions.map { file -> publishFile(file, info.resolve('virnucpro_software_mqc_versions.yml')) })

    emit:
    published       // channel: each published folder and file
}

/*
 * The files of one sample's result set (contracts.SAMPLE_RESULT_FILES); summary.json lists the
 * SHA-256 of the others.
 */
def resultFiles() {
    return ['prediction_results.txt', 'prediction_results_highestscore.csv', 'sequence_calls.tsv', 'viral_sequences.fasta', 'summary.json']
}

/*
 * The files at the top of --outdir and in pipeline_info/ that a run replaces.
 */
def runFiles() {
    return ['report.html', 'virnucpro_mqc.tsv', 'pipeline_info/models.json', 'pipeline_info/virnucpro_software_mqc_versions.yml']
}

def processNames() {
    return ['STAGE_MODELS', 'PREPARE_FRAMES', 'EMBED_DNABERT', 'EMBED_ESM', 'CLASSIFY_FRAMES', 'SUMMARIZE', 'MAKE_REPORT']
}

def isLocal(Path path) {
    return path.fileSystem == java.nio.file.FileSystems.getDefault()
}

def exists(Path path) {
    return java.nio.file.Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)
}

/*
 * The first `limit` bytes of a file as text: enough to recognise the run's own files, which are
 * small, without reading a large file of the user's.
 */
def head(Path file, int limit) {
    return file.withInputStream { stream -> new String(stream.readNBytes(limit), 'UTF-8') }
}

def jsonOf(Path file) {
    def text = head(file, 1 << 20)
    try {
        return new groovy.json.JsonSlurper().parseText(text)
    }
    catch (Exception _error) {
        return null
    }
}

/*
 * Why `folder` is not a result set of this pipeline for sample `sample`, or null when it is one
 * (or does not exist): it may hold only the five result files, and its summary.json (absent in a
 * set cut short on an object store) must be one that summarize.py wrote for that sample.
 */
def resultSetProblem(Path folder, String sample) {
    if (!exists(folder)) {
        return null
    }
    if (java.nio.file.Files.isSymbolicLink(folder)) {
        return 'is a symbolic link'
    }
    if (!folder.isDirectory()) {
        return 'is a file'
    }
    def foreign = folder.listFiles().collect { entry -> entry.name }.findAll { name -> !(name in resultFiles()) }.sort()
    if (foreign) {
        return "holds '${foreign[0]}'"
    }
    def strays = folder.listFiles().findAll { entry -> !entry.isFile() }
    if (strays) {
        return "holds the folder '${strays[0].name}'"
    }
    def summary = folder.resolve('summary.json')
    if (exists(summary)) {
        def json = jsonOf(summary)
        if (!(json instanceof Map) || json.sample != sample || !(json.files instanceof Map) || !resultFiles().containsAll(json.files.keySet())) {
            return "holds a summary.json that is not sample ${sample}'s from this pipeline"
        }
    }
    return null
}

/*
 * Why `file` (report.html, virnucpro_mqc.tsv, models.json or the software versions) is not this
 * pipeline's, or null when it is (or does not exist).
 */
def runFileProblem(Path file) {
    if (!exists(file)) {
        return null
    }
    if (java.nio.file.Files.isSymbolicLink(file) || !file.isFile()) {
        return 'is a symbolic link or a folder'
    }
    def ours = false
    if (file.name == 'report.html') {
        ours = head(file, 4096).contains('<title>VirNucPro report</title>')
    }
    else if (file.name == 'virnucpro_mqc.tsv') {
        def lines = head(file, 256).readLines()
        ours = lines && lines[0] ==~ /# id: ['"]virnucpro['"]/
    }
    else if (file.name == 'models.json') {
        def json = jsonOf(file)
        ours = json instanceof Map && json && ['dnabert', 'esm', 'classifier'].containsAll(json.keySet()) && json.values().every { entry -> entry instanceof Map && entry.containsKey('sha256') }
    }
    else if (file.name == 'virnucpro_software_mqc_versions.yml') {
        def yaml = null
        try {
            yaml = new org.yaml.snakeyaml.Yaml().load(head(file, 1 << 20))
        }
        catch (Exception _error) {
            yaml = null
        }
        ours = yaml instanceof Map && yaml.keySet().any { name -> name.toString() in processNames() }
    }
    return ours ? null : 'was not written by this pipeline'
}

/*
 * Refuse at start what the run would replace but did not write, and inputs inside --outdir, and
 * put back a result set left aside by a run that died while swapping it. `samples`: [id, fasta,
 * where] (where: what an error names); `sheet`: the samplesheet, if any.
 */
def checkOutdir(Path outdir, List samples, Path sheet) {
    def shown = outdir.toUriString()
    if (exists(outdir) && !outdir.isDirectory()) {
        error("--outdir ${shown}: is a file, not a folder")
    }
    // hidden folders that publishing leaves only when the run dies (listed once: many samples)
    def hidden = isLocal(outdir) && exists(outdir) ? outdir.listFiles().collect { entry -> entry.name }.findAll { name -> name.startsWith('.') } : []
    samples.each { sample ->
        def target = outdir.resolve(sample.id)
        if (hidden.any { name -> name.startsWith(".${sample.id}.virnucpro-") }) {
            recoverResultSet(target)
        }
        def problem = resultSetProblem(target, sample.id)
        if (problem) {
            error("--outdir ${shown}: ${target.toUriString()} ${problem}, which this pipeline did not write; the results of sample ${sample.id} would replace it: move it away or choose another --outdir")
        }
    }
    def inputs = (sheet ? [[where: '--input', path: sheet]] : []) + samples.collect { sample -> [where: sample.where, path: sample.fasta] }
    def inside = inputs.find { entry -> isInside(entry.path, outdir) }
    if (inside) {
        error("${inside.where}: ${inside.path.toUriString()} lies inside --outdir ${shown}, where the results could replace it: move it or choose another --outdir")
    }
    runFiles().each { name ->
        def target = outdir.resolve(name)
        def problem = runFileProblem(target)
        if (problem) {
            error("--outdir ${shown}: ${target.toUriString()} ${problem} and would be replaced by the run's: move it away or choose another --outdir")
        }
    }
}

/*
 * Whether `path` lies inside `folder` (after symbolic links, for local paths).
 */
def isInside(Path path, Path folder) {
    if (!exists(folder)) {
        return false
    }
    if (isLocal(path) && isLocal(folder)) {
        return realPath(path).startsWith(realPath(folder))
    }
    return path.toUriString().startsWith(folder.toUriString().replaceFirst(/\/*$/, '/'))
}

/*
 * The hidden folders and files beside `target` that publishing uses: `.NAME.virnucpro-new-TOKEN`
 * (being copied) and `.NAME.virnucpro-old-TOKEN` (the set being replaced).
 */
def sideName(Path target, String kind, String token) {
    return target.resolveSibling(".${target.name}.virnucpro-${kind}-${token}")
}

def sidePaths(Path target, String kind) {
    def parent = target.parent
    if (!exists(parent)) {
        return []
    }
    def prefix = ".${target.name}.virnucpro-${kind}-"
    return parent.listFiles().findAll { entry -> entry.name.startsWith(prefix) }.sort { entry -> entry.name }
}

def realPath(Path path) {
    return exists(path) ? path.toRealPath() : path.toAbsolutePath().normalize()
}

def newToken() {
    return java.util.UUID.randomUUID().toString().take(8)
}

/*
 * A local result set folder after a run died while publishing it: the set it had moved aside
 * is put back when the target is missing (it died between the two renames), and the hidden
 * folders it left are removed (only those that hold nothing but result files).
 */
def recoverResultSet(Path target) {
    def asides = sidePaths(target, 'old')
    if (!exists(target) && asides && resultSetProblem(asides.last(), target.name) == null) {
        java.nio.file.Files.move(asides.last(), target, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
        log.warn("${target}: the result set a stopped run had moved aside is put back")
    }
    (sidePaths(target, 'old') + sidePaths(target, 'new')).each { leftover ->
        if (resultSetProblem(leftover, target.name) == null) {
            leftover.deleteDir()
        }
    }
}

/*
 * Publish the result folder `source` (SUMMARIZE's) as `target`, replacing a previous complete set
 * only by the complete new one.
 */
def publishResultSet(Path source, Path target) {
    def problem = resultSetProblem(target, target.name)
    if (problem) {
        error("--outdir: ${target.toUriString()} ${problem}, which this pipeline did not write: the results of sample ${target.name} are not published there")
    }
    def files = source.listFiles().toList().sort { file -> file.name }
    def unknown = files.findAll { file -> !(file.name in resultFiles()) }
    if (unknown) {
        error("${source}: ${unknown[0].name} is not a result file: not published")
    }
    try {
        if (isLocal(target)) {
            swapIn(files, target)
        }
        else {
            copySummaryLast(files, target)
        }
    }
    catch (java.io.IOException failure) {
        def kept = isLocal(target) ? 'the folder holds its previous results, if any' : 'summary.json is not written, so the folder does not pass for a complete set'
        error("publishing the results of sample ${target.name} to ${target.toUriString()} failed (${failure.message ?: failure.class.simpleName}): ${kept}")
    }
    return target
}

/*
 * Local or shared file system: copy into a hidden folder beside `target`, then swap it in.
 */
def swapIn(List files, Path target) {
    def token = newToken()
    def staging = sideName(target, 'new', token)
    try {
        java.nio.file.Files.createDirectories(staging)
        files.each { file -> file.copyTo(staging.resolve(file.name)) }
    }
    catch (java.io.IOException failure) {
        staging.deleteDir()
        throw failure
    }
    if (!exists(target)) {
        java.nio.file.Files.move(staging, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
        return
    }
    def aside = sideName(target, 'old', token)
    java.nio.file.Files.move(target, aside, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
    try {
        java.nio.file.Files.move(staging, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
    }
    catch (java.io.IOException failure) {
        java.nio.file.Files.move(aside, target, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
        staging.deleteDir()
        throw failure
    }
    aside.deleteDir()
}

/*
 * Object store: no renames. The old summary.json goes first, and result files the new set does
 * not have; the new files are copied, summary.json last.
 */
def copySummaryLast(List files, Path target) {
    def summary = target.resolve('summary.json')
    if (exists(summary)) {
        summary.delete()
    }
    def names = files.collect { file -> file.name }
    (target.listFiles() ?: []).findAll { file -> file.name in resultFiles() && !(file.name in names) }.each { file -> file.delete() }
    files.findAll { file -> file.name != 'summary.json' }.each { file -> file.copyTo(target.resolve(file.name)) }
    files.findAll { file -> file.name == 'summary.json' }.each { file -> file.copyTo(summary) }
}

/*
 * Publish one file of the run as `target` (never over a file the pipeline did not write); on a
 * local or shared file system through a hidden name beside it and a rename.
 */
def publishFile(Path source, Path target) {
    def problem = runFileProblem(target)
    if (problem) {
        error("--outdir: ${target.toUriString()} ${problem}: not replaced by the run's")
    }
    try {
        writeWhole(target) { path -> source.copyTo(path) }
    }
    catch (java.io.IOException failure) {
        error("publishing ${target.toUriString()} failed (${failure.message ?: failure.class.simpleName}): ${isLocal(target) ? 'the previous one, if any, is kept' : 'it may be incomplete'}")
    }
    return target
}

/*
 * Write `target` with `write` (given the path to write to): locally through a hidden name and a
 * rename, so the name holds the old file or the whole new one.
 */
def writeWhole(Path target, Closure write) {
    java.nio.file.Files.createDirectories(target.parent)
    if (!isLocal(target)) {
        write.call(target)
        return target
    }
    def staging = sideName(target, 'new', newToken())
    try {
        write.call(staging)
        java.nio.file.Files.move(staging, target, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE)
    }
    catch (java.io.IOException failure) {
        java.nio.file.Files.deleteIfExists(staging)
        throw failure
    }
    return target
}
