package calcmesh.interop;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A tiny command-line flag parser in the spirit of Go's flag package: every flag takes a value,
 * written `--name value`, `--name=value`, `-name value` or `-name=value`; unknown flags and
 * stray arguments are errors; `-h` / `--help` asks for the usage text.
 */
final class Flags {
    /** A command line that cannot be used; the message says why. */
    static final class UsageException extends Exception {
        UsageException(String message) {
            super(message);
        }
    }

    /** `-h` or `--help` was given. */
    static final class HelpRequested extends Exception {
        HelpRequested() {
            super("help requested");
        }
    }

    private final Map<String, String> values;

    private Flags(Map<String, String> values) {
        this.values = values;
    }

    /** Parses args against the known flags, given with their defaults. */
    static Flags parse(String[] args, Map<String, String> defaults) throws UsageException, HelpRequested {
        Map<String, String> values = new LinkedHashMap<>(defaults);
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("-h") || arg.equals("--help") || arg.equals("-help")) {
                throw new HelpRequested();
            }
            if (!arg.startsWith("-") || arg.equals("-") || arg.equals("--")) {
                throw new UsageException("unexpected argument " + arg);
            }
            String name = arg.replaceFirst("^--?", "");
            String value = null;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            }
            if (!defaults.containsKey(name)) {
                throw new UsageException("unknown flag " + arg);
            }
            if (value == null) {
                if (i + 1 >= args.length) {
                    throw new UsageException("flag --" + name + " needs a value");
                }
                value = args[++i];
            }
            values.put(name, value);
        }
        return new Flags(values);
    }

    String get(String name) {
        return values.get(name);
    }

    int intValue(String name) throws UsageException {
        try {
            return Integer.parseInt(get(name));
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants an integer, got " + get(name));
        }
    }

    double doubleValue(String name) throws UsageException {
        try {
            return Double.parseDouble(get(name));
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " wants a number, got " + get(name));
        }
    }
}
