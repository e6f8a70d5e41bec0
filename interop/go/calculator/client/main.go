// Command client runs interop/scenario.json — every calculator.Calculator RPC with its
// expected result or status — with grpc-go against a calculator server, as the Python and Node
// clients do. Prints `ok NAME` or `FAIL NAME: …` per case and ends with `N passed, M failed`;
// exits 1 if any failed.
//
//	calc-client -target 127.0.0.1:50051 [-scenario ../../scenario.json] [-compression gzip]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"time"

	pb "calcmesh.invalid/interop/go/calculator/calculatorpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers gzip for -compression gzip
	"google.golang.org/grpc/status"
)

type caseSpec struct {
	Name     string           `json:"name"`
	RPC      string           `json:"rpc"`
	Request  map[string]any   `json:"request"`
	Requests []map[string]any `json:"requests"`
	Numbers  []any            `json:"numbers"`
	Number   string           `json:"number"`
	Expect   map[string]any   `json:"expect"`
}

type outcome struct {
	code      string
	result    *float64
	responses []map[string]any
	summary   map[string]float64
	summaries []map[string]float64
	factors   []string
}

var summaryFields = []string{"count", "sum", "mean", "min", "max", "variance"}

// number reads a JSON number, or "NaN", "Infinity", "-Infinity" spelled as strings.
func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return math.NaN()
}

func close(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Max(math.Abs(a), math.Abs(b)), 1)
}

func request(r map[string]any) *pb.Request {
	return &pb.Request{Num1: number(r["num1"]), Num2: number(r["num2"]), Operator: r["operator"].(string)}
}

func summary(s *pb.Summary) map[string]float64 {
	return map[string]float64{"count": float64(s.Count), "sum": s.Sum, "mean": s.Mean, "min": s.Min, "max": s.Max, "variance": s.Variance}
}

func numbers(list []any) []*pb.Number {
	out := make([]*pb.Number, len(list))
	for i, v := range list {
		out[i] = &pb.Number{Value: number(v)}
	}
	return out
}

// run performs one case's call; a failed call's status lands in outcome.code.
func run(ctx context.Context, c pb.CalculatorClient, spec caseSpec, opts []grpc.CallOption) outcome {
	var got outcome
	err := func() error {
		switch spec.RPC {
		case "Calculate":
			r, err := c.Calculate(ctx, request(spec.Request), opts...)
			if err == nil {
				got.result = &r.Result
			}
			return err
		case "CalculateStream":
			stream, err := c.CalculateStream(ctx, opts...)
			if err != nil {
				return err
			}
			for _, r := range spec.Requests {
				if err := stream.Send(request(r)); err != nil {
					return err
				}
			}
			stream.CloseSend()
			for {
				r, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if r.Error != nil {
					got.responses = append(got.responses, map[string]any{"code": codeName(codes.Code(r.Error.Code))})
				} else {
					got.responses = append(got.responses, map[string]any{"result": r.Result})
				}
			}
		case "Summarize":
			stream, err := c.Summarize(ctx, opts...)
			if err != nil {
				return err
			}
			for _, n := range numbers(spec.Numbers) {
				if err := stream.Send(n); err != nil {
					break // the server answered early; CloseAndRecv says how
				}
			}
			s, err := stream.CloseAndRecv()
			if err == nil {
				got.summary = summary(s)
			}
			return err
		case "Factorize":
			n, _ := strconv.ParseUint(spec.Number, 10, 64)
			stream, err := c.Factorize(ctx, &pb.FactorizeRequest{Number: n}, opts...)
			if err != nil {
				return err
			}
			got.factors = []string{}
			for {
				f, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				got.factors = append(got.factors, strconv.FormatUint(f.Prime, 10))
			}
		case "RunningSummary":
			stream, err := c.RunningSummary(ctx, opts...)
			if err != nil {
				return err
			}
			for _, n := range numbers(spec.Numbers) {
				if err := stream.Send(n); err != nil {
					break
				}
			}
			stream.CloseSend()
			got.summaries = []map[string]float64{}
			for {
				s, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				got.summaries = append(got.summaries, summary(s))
			}
		}
		return fmt.Errorf("unknown rpc %s", spec.RPC)
	}()
	if err != nil {
		got.code = codeName(status.Code(err))
	}
	return got
}

// codeName spells a code as the scenario does (INVALID_ARGUMENT).
func codeName(c codes.Code) string {
	names := map[codes.Code]string{codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS", codes.PermissionDenied: "PERMISSION_DENIED",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.FailedPrecondition: "FAILED_PRECONDITION",
		codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
		codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
		codes.Unauthenticated: "UNAUTHENTICATED"}
	return names[c]
}

func sameSummary(got, want map[string]float64) bool {
	for _, f := range summaryFields {
		if !close(got[f], want[f]) {
			return false
		}
	}
	return true
}

func summaryOf(v any) map[string]float64 {
	out := map[string]float64{}
	for k, x := range v.(map[string]any) {
		out[k] = number(x)
	}
	return out
}

// compare says what differs from the expectation, or "".
func compare(got outcome, expect map[string]any) string {
	want, _ := expect["code"].(string)
	if want != got.code {
		return fmt.Sprintf("status %q, expected %q", got.code, want)
	}
	if r, ok := expect["result"]; ok && (got.result == nil || !close(*got.result, number(r))) {
		return fmt.Sprintf("result %v, expected %v", got.result, r)
	}
	if list, ok := expect["responses"].([]any); ok {
		if len(list) != len(got.responses) {
			return fmt.Sprintf("responses %v, expected %v", got.responses, list)
		}
		for i, w := range list {
			w := w.(map[string]any)
			h := got.responses[i]
			if w["code"] != h["code"] || (w["result"] != nil && (h["result"] == nil || !close(h["result"].(float64), number(w["result"])))) {
				return fmt.Sprintf("responses %v, expected %v", got.responses, list)
			}
		}
	}
	if s, ok := expect["summary"]; ok && (got.summary == nil || !sameSummary(got.summary, summaryOf(s))) {
		return fmt.Sprintf("summary %v, expected %v", got.summary, s)
	}
	if f, ok := expect["factors"].([]any); ok {
		if fmt.Sprint(f) != fmt.Sprint(got.factors) {
			return fmt.Sprintf("factors %v, expected %v", got.factors, f)
		}
	}
	if list, ok := expect["summaries"].([]any); ok {
		if len(list) != len(got.summaries) {
			return fmt.Sprintf("summaries %v, expected %v", got.summaries, list)
		}
		for i, w := range list {
			if !sameSummary(got.summaries[i], summaryOf(w)) {
				return fmt.Sprintf("summaries %v, expected %v", got.summaries, list)
			}
		}
	}
	return ""
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "host:port of the calculator")
	scenario := flag.String("scenario", "interop/scenario.json", "the scenario file")
	compression := flag.String("compression", "", "compress requests: gzip (default none)")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline per call")
	flag.Parse()
	data, err := os.ReadFile(*scenario)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	var file struct {
		Cases []caseSpec `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		fmt.Fprintln(os.Stderr, "error: scenario:", err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	defer conn.Close()
	var opts []grpc.CallOption
	if *compression != "" {
		opts = append(opts, grpc.UseCompressor(*compression))
	}
	client := pb.NewCalculatorClient(conn)
	failed := 0
	for _, spec := range file.Cases {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		problem := compare(run(ctx, client, spec, opts), spec.Expect)
		cancel()
		if problem != "" {
			failed++
			fmt.Printf("FAIL %s: %s\n", spec.Name, problem)
		} else {
			fmt.Printf("ok %s\n", spec.Name)
		}
	}
	fmt.Printf("%d passed, %d failed\n", len(file.Cases)-failed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
