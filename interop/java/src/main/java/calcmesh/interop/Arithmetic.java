package calcmesh.interop;

import io.grpc.Status;
import io.grpc.StatusException;

/**
 * One calculator operation with calcmesh's results and status codes: INVALID_ARGUMENT for an
 * unknown operator, a NaN operand, division or modulo by zero and a result that is undefined;
 * OUT_OF_RANGE when finite operands overflow. Modulo takes the dividend's sign (Java's % on
 * doubles is C's fmod, like Go's math.Mod and Rust's %).
 */
final class Arithmetic {
    static final String OPERATORS = "+ - * / % ^";

    private Arithmetic() {
    }

    static double calculate(double a, String op, double b) throws StatusException {
        if (Double.isNaN(a) || Double.isNaN(b)) {
            throw invalid("operands must be numbers, got NaN");
        }
        double r = apply(a, op, b);
        if (Double.isNaN(r)) {
            throw invalid(describe(a, op, b) + " has no real result");
        }
        if (Double.isInfinite(r) && !Double.isInfinite(a) && !Double.isInfinite(b)) {
            throw Status.OUT_OF_RANGE
                    .withDescription("result of " + describe(a, op, b) + " overflows a 64-bit float")
                    .asException();
        }
        return r;
    }

    private static double apply(double a, String op, double b) throws StatusException {
        switch (op) {
            case "+":
                return a + b;
            case "-":
                return a - b;
            case "*":
                return a * b;
            case "/":
            case "%":
                if (b == 0) {
                    throw invalid("division by zero in " + op);
                }
                return op.equals("/") ? a / b : a % b;
            case "^":
                if (a == 0 && b < 0) {
                    throw invalid("division by zero in ^");
                }
                return Math.pow(a, b);
            default:
                throw invalid("unknown operator " + GoFormat.quote(op) + ": expected one of " + OPERATORS);
        }
    }

    private static String describe(double a, String op, double b) {
        return GoFormat.number(a) + " " + op + " " + GoFormat.number(b);
    }

    private static StatusException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asException();
    }
}
