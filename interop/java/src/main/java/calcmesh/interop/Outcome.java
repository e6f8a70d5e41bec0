package calcmesh.interop;

import calculator.CalculatorOuterClass.Response;
import calculator.CalculatorOuterClass.Summary;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** What one case's call produced: its status and whatever results arrived before it ended. */
final class Outcome {
    static final List<String> SUMMARY_FIELDS = List.of("count", "sum", "mean", "min", "max", "variance");

    /** One CalculateStream item: a result, or the name of its per-item error code. */
    record Item(Double result, String code) {
        static Item of(Response response) {
            if (response.hasError()) {
                return new Item(null, StatusNames.of(response.getError().getCode()));
            }
            return new Item(response.getResult(), null);
        }

        @Override
        public String toString() {
            return code != null ? "{code=" + code + "}" : "{result=" + result + "}";
        }
    }

    /** The status name of a failed call ("" when it succeeded). */
    String code = "";
    /** Why the case could not even be tried, or null. */
    String problem;
    Double result;
    List<Item> responses;
    Map<String, Double> summary;
    List<Map<String, Double>> summaries;
    List<String> factors;

    static Map<String, Double> fields(Summary s) {
        Map<String, Double> out = new LinkedHashMap<>();
        out.put("count", unsignedToDouble(s.getCount()));
        out.put("sum", s.getSum());
        out.put("mean", s.getMean());
        out.put("min", s.getMin());
        out.put("max", s.getMax());
        out.put("variance", s.getVariance());
        return out;
    }

    static List<Map<String, Double>> fields(List<Summary> summaries) {
        List<Map<String, Double>> out = new ArrayList<>();
        summaries.forEach(s -> out.add(fields(s)));
        return out;
    }

    private static double unsignedToDouble(long v) {
        return v >= 0 ? v : ((v >>> 1) | (v & 1)) * 2.0;
    }
}
