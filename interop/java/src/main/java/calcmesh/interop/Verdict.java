package calcmesh.interop;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Compares an Outcome with a case's `expect`: the status first, then each expected kind of
 * result. Doubles match within a relative 1e-9 (absolute near zero), as in the other peers.
 */
final class Verdict {
    private Verdict() {
    }

    /** What differs from the expectation, or null when the outcome is as expected. */
    static String problem(Outcome got, JsonObject expect) {
        if (got.problem != null) {
            return got.problem;
        }
        String wantCode = expect.has("code") ? expect.get("code").getAsString() : "";
        if (!wantCode.equals(got.code)) {
            return String.format("status \"%s\", expected \"%s\"", got.code, wantCode);
        }
        if (expect.has("result") && (got.result == null || !close(got.result, Scenario.number(expect.get("result"))))) {
            return "result " + got.result + ", expected " + expect.get("result");
        }
        if (expect.has("responses") && !sameResponses(got.responses, expect.getAsJsonArray("responses"))) {
            return "responses " + got.responses + ", expected " + expect.get("responses");
        }
        if (expect.has("summary") && (got.summary == null || !sameSummary(got.summary, expect.get("summary")))) {
            return "summary " + got.summary + ", expected " + expect.get("summary");
        }
        if (expect.has("factors") && !strings(expect.getAsJsonArray("factors")).equals(got.factors)) {
            return "factors " + got.factors + ", expected " + expect.get("factors");
        }
        if (expect.has("summaries") && !sameSummaries(got.summaries, expect.getAsJsonArray("summaries"))) {
            return "summaries " + got.summaries + ", expected " + expect.get("summaries");
        }
        return null;
    }

    static boolean close(double a, double b) {
        return a == b || Math.abs(a - b) <= 1e-9 * Math.max(Math.max(Math.abs(a), Math.abs(b)), 1);
    }

    private static boolean sameResponses(List<Outcome.Item> got, JsonArray want) {
        if (got == null || got.size() != want.size()) {
            return false;
        }
        for (int i = 0; i < want.size(); i++) {
            JsonObject w = want.get(i).getAsJsonObject();
            Outcome.Item h = got.get(i);
            String wantCode = w.has("code") ? w.get("code").getAsString() : null;
            if (wantCode == null ? h.code() != null : !wantCode.equals(h.code())) {
                return false;
            }
            if (w.has("result") && (h.result() == null || !close(h.result(), Scenario.number(w.get("result"))))) {
                return false;
            }
        }
        return true;
    }

    private static boolean sameSummaries(List<Map<String, Double>> got, JsonArray want) {
        if (got == null || got.size() != want.size()) {
            return false;
        }
        for (int i = 0; i < want.size(); i++) {
            if (!sameSummary(got.get(i), want.get(i))) {
                return false;
            }
        }
        return true;
    }

    /** Every summary field matches; a field the expectation leaves out is expected to be 0. */
    private static boolean sameSummary(Map<String, Double> got, JsonElement want) {
        Map<String, Double> expected = new LinkedHashMap<>();
        want.getAsJsonObject().entrySet().forEach(e -> expected.put(e.getKey(), Scenario.number(e.getValue())));
        for (String field : Outcome.SUMMARY_FIELDS) {
            if (!close(got.getOrDefault(field, 0.0), expected.getOrDefault(field, 0.0))) {
                return false;
            }
        }
        return true;
    }

    private static List<String> strings(JsonArray values) {
        List<String> out = new ArrayList<>();
        values.forEach(v -> out.add(v.getAsString()));
        return out;
    }
}
