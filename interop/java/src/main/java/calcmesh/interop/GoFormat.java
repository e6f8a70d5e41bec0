package calcmesh.interop;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/**
 * Formats values the way the Go peer's error messages do (fmt's %v for a float64, %q for a
 * string), so that the Java server's status messages read like the Go server's.
 */
final class GoFormat {
    private GoFormat() {
    }

    /** Go's %v of a float64 (strconv's shortest %g): exponent form below 1e-4 and from 1e6 on. */
    static String number(double x) {
        if (Double.isNaN(x)) {
            return "NaN";
        }
        if (Double.isInfinite(x)) {
            return x > 0 ? "+Inf" : "-Inf";
        }
        if (x == 0) {
            return 1 / x < 0 ? "-0" : "0";
        }
        BigDecimal value = shortest(x);
        String digits = value.unscaledValue().abs().toString();
        int exponent = digits.length() - 1 - value.scale();
        if (exponent >= -4 && exponent < 6) {
            return value.toPlainString();
        }
        String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        String sign = x < 0 ? "-" : "";
        String exponentSign = exponent < 0 ? "-" : "+";
        return String.format("%s%se%s%02d", sign, mantissa, exponentSign, Math.abs(exponent));
    }

    /**
     * The fewest significant digits that read back as x (Java 17's Double.toString is not always
     * the shortest, e.g. 4.9E-324 for what Go prints as 5e-324).
     */
    private static BigDecimal shortest(double x) {
        BigDecimal exact = new BigDecimal(x);
        for (int digits = 1; digits < 17; digits++) {
            BigDecimal rounded = exact.round(new MathContext(digits, RoundingMode.HALF_EVEN));
            if (rounded.doubleValue() == x) {
                return rounded.stripTrailingZeros();
            }
        }
        return exact.round(new MathContext(17, RoundingMode.HALF_EVEN)).stripTrailingZeros();
    }

    /** Go's %q of a string: double-quoted, with quotes, backslashes and control characters escaped. */
    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20 || c == 0x7f) {
                        out.append(String.format("\\x%02x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
