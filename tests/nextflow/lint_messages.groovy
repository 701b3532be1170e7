/*
 * The errors and warnings of Nextflow's own parser for the given scripts (.nf) and configs,
 * one line each: `nextflow lint` of 25.04.4 stops with a NullPointerException instead of
 * printing them. Run with the runtime's classpath:
 *     java -cp 'tests/nextflow/lib/*' groovy.ui.GroovyMain tests/nextflow/lint_messages.groovy FILE...
 */
import nextflow.config.control.ConfigParser
import nextflow.script.control.ScriptParser

def scripts = new ScriptParser()
def configs = new ConfigParser()
args.each { name -> name.endsWith('.nf') ? scripts.parse(new File(name)) : configs.parse(new File(name)) }
scripts.analyze()
configs.analyze()
[scripts, configs].each { parser ->
    parser.compiler().getSources().values().each { source ->
        def collector = source.getErrorCollector()
        (collector.getErrors() ?: []).each { message ->
            println "${source.name}:${message.cause.startLine}:${message.cause.startColumn}: error: ${message.cause.originalMessage}"
        }
        (collector.getWarnings() ?: []).each { warning ->
            println "${source.name}:${warning.context?.startLine}: warning: ${warning.message}"
        }
    }
}
