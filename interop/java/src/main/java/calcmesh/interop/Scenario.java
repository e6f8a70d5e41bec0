package calcmesh.interop;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * interop/scenario.json: the cases, each an RPC with its input and expected outcome. JSON cannot
 * hold NaN or infinities, so numbers may also be the strings "NaN", "Infinity", "-Infinity";
 * u64 values are decimal strings.
 */
final class Scenario {
    /** One case: its name, its RPC and the whole JSON object (input fields and `expect`). */
    record Case(String name, String rpc, JsonObject spec) {
        JsonObject expect() {
            return spec.has("expect") ? spec.getAsJsonObject("expect") : new JsonObject();
        }
    }

    private Scenario() {
    }

    static List<Case> load(Path file) throws IOException {
        String text = read(file);
        try {
            JsonArray cases = JsonParser.parseString(text).getAsJsonObject().getAsJsonArray("cases");
            if (cases == null) {
                throw new IOException("scenario: no \"cases\" array");
            }
            List<Case> out = new ArrayList<>();
            for (JsonElement element : cases) {
                JsonObject spec = element.getAsJsonObject();
                out.add(new Case(string(spec, "name"), string(spec, "rpc"), spec));
            }
            return out;
        } catch (JsonParseException | IllegalStateException | ClassCastException e) {
            throw new IOException("scenario: " + e.getMessage(), e);
        }
    }

    private static String read(Path file) throws IOException {
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new IOException("no such scenario file: " + file, e);
        } catch (IOException e) {
            throw new IOException("cannot read " + file + ": " + e, e);
        }
    }

    private static String string(JsonObject object, String field) {
        JsonElement value = object.get(field);
        return value == null || value.isJsonNull() ? "" : value.getAsString();
    }

    /** A JSON number, or "NaN" / "Infinity" / "-Infinity" spelled as a string; absent is NaN. */
    static double number(JsonElement value) {
        if (value == null || value.isJsonNull()) {
            return Double.NaN;
        }
        if (value.getAsJsonPrimitive().isNumber()) {
            return value.getAsDouble();
        }
        String text = value.getAsString().trim();
        switch (text.toLowerCase()) {
            case "inf", "+inf", "infinity", "+infinity":
                return Double.POSITIVE_INFINITY;
            case "-inf", "-infinity":
                return Double.NEGATIVE_INFINITY;
            case "nan":
                return Double.NaN;
            default:
                return Double.parseDouble(text);
        }
    }

    static List<Double> numbers(JsonArray values) {
        List<Double> out = new ArrayList<>();
        if (values != null) {
            values.forEach(v -> out.add(number(v)));
        }
        return out;
    }
}
