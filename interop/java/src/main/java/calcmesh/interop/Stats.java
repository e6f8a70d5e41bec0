package calcmesh.interop;

import calculator.CalculatorOuterClass.Summary;
import io.grpc.Status;
import io.grpc.StatusException;

/**
 * Running statistics over finite numbers: Welford's mean and (population) variance, Neumaier's
 * compensated sum, min and max. An empty Stats summarizes to all zeros.
 */
final class Stats {
    private long count;
    private double mean;
    private double m2;
    private double min;
    private double max;
    private double sum;
    private double compensation;

    /** Adds x; a NaN or infinite x is refused with INVALID_ARGUMENT naming its position. */
    void push(double x) throws StatusException {
        if (Double.isNaN(x) || Double.isInfinite(x)) {
            throw Status.INVALID_ARGUMENT
                    .withDescription("value #" + Long.toUnsignedString(count + 1) + " is " + GoFormat.number(x)
                            + ": only finite numbers can be summarized")
                    .asException();
        }
        count++;
        if (count == 1) {
            min = x;
            max = x;
        } else {
            min = Math.min(min, x);
            max = Math.max(max, x);
        }
        double delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
        addToSum(x);
    }

    private void addToSum(double x) {
        double t = sum + x;
        if (Math.abs(sum) >= Math.abs(x)) {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }

    Summary summary() {
        if (count == 0) {
            return Summary.getDefaultInstance();
        }
        return Summary.newBuilder()
                .setCount(count)
                .setSum(sum + compensation)
                .setMean(mean)
                .setMin(min)
                .setMax(max)
                .setVariance(m2 / count)
                .build();
    }
}
