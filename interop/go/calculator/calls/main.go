// Command calls makes N Calculate calls (`10 * 5`), one after another, with grpc-go and a gRPC
// service config, and prints one JSON line: how many calls ended with each status, and how long
// they took. calcmesh's tests give grpc-go and calcmesh's own client the same config against
// the same faulty server, and compare (retries, pushback, throttling, timeouts, waitForReady).
//
//	calls -target 127.0.0.1:50051 -service-config '{"methodConfig": [...]}' -n 10
//	calls -target 127.0.0.1:50051 -n 1 -keepalive 10s -linger 45s   # an aggressive keepalive
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	pb "calcmesh.invalid/interop/go/calculator/calculatorpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

var codeNames = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// serviceConfig reads the flag: the JSON itself if it starts with `{`, else a file of it.
func serviceConfig(value string) (string, error) {
	if value == "" || strings.HasPrefix(strings.TrimSpace(value), "{") {
		return value, nil
	}
	data, err := os.ReadFile(value)
	return string(data), err
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "host:port of the calculator")
	config := flag.String("service-config", "", "a gRPC service config: JSON, or a file of it")
	n := flag.Int("n", 10, "calls to make, one after another")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline per call")
	ping := flag.Duration("keepalive", 0, "ping the server this often, calls or not (grpc-go allows 10s at least; 0: no pings)")
	linger := flag.Duration("linger", 0, "keep the connection this long after the calls (to watch keepalives)")
	flag.Parse()
	json_, err := serviceConfig(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	options := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if json_ != "" {
		options = append(options, grpc.WithDefaultServiceConfig(json_))
	}
	if *ping > 0 {
		params := keepalive.ClientParameters{Time: *ping, Timeout: 5 * time.Second, PermitWithoutStream: true}
		options = append(options, grpc.WithKeepaliveParams(params))
	}
	conn, err := grpc.NewClient(*target, options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	defer conn.Close()
	client := pb.NewCalculatorClient(conn)
	counts := map[string]int{}
	start := time.Now()
	for i := 0; i < *n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		_, err := client.Calculate(ctx, &pb.Request{Num1: 10, Operator: "*", Num2: 5})
		cancel()
		counts[codeNames[status.Code(err)]]++
	}
	out, _ := json.Marshal(map[string]any{"status": counts, "seconds": time.Since(start).Seconds()})
	fmt.Println(string(out))
	time.Sleep(*linger)
}
