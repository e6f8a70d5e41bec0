// Command server serves calculator.Calculator with grpc-go, with the same results and status
// codes as calcmesh (the semantics the Python peer's calculator_impl.py spells out too).
// Prints `listening on HOST:PORT` once bound (port 0 picks a free one); SIGINT/SIGTERM stop it
// gracefully.
//
//	calc-server [-host 127.0.0.1] [-port 50051]
//	calc-server -port 0 -tls-cert calculator.pem -tls-key calculator.key [-client-ca ca.pem]   # TLS; mutual with -client-ca
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/bits"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	pb "calcmesh.invalid/interop/go/calculator/calculatorpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // reads gzip requests, as every other peer does
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

const operators = "+ - * / % ^"

func calculate(a float64, op string, b float64) (float64, error) {
	if math.IsNaN(a) || math.IsNaN(b) {
		return 0, status.Error(codes.InvalidArgument, "operands must be numbers, got NaN")
	}
	var r float64
	switch op {
	case "+":
		r = a + b
	case "-":
		r = a - b
	case "*":
		r = a * b
	case "/", "%":
		if b == 0 {
			return 0, status.Errorf(codes.InvalidArgument, "division by zero in %s", op)
		}
		if op == "/" {
			r = a / b
		} else {
			r = math.Mod(a, b) // the sign of the dividend, as in Rust and C
		}
	case "^":
		if a == 0 && b < 0 {
			return 0, status.Error(codes.InvalidArgument, "division by zero in ^")
		}
		r = math.Pow(a, b)
	default:
		return 0, status.Errorf(codes.InvalidArgument, "unknown operator %q: expected one of %s", op, operators)
	}
	if math.IsNaN(r) {
		return 0, status.Errorf(codes.InvalidArgument, "%v %s %v has no real result", a, op, b)
	}
	if math.IsInf(r, 0) && !math.IsInf(a, 0) && !math.IsInf(b, 0) {
		return 0, status.Errorf(codes.OutOfRange, "result of %v %s %v overflows a 64-bit float", a, op, b)
	}
	return r, nil
}

// stats: Welford's mean and variance, Neumaier's compensated sum.
type stats struct {
	count                       uint64
	mean, m2, min, max, sum, cs float64
}

func (s *stats) push(x float64) error {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return status.Errorf(codes.InvalidArgument, "value #%d is %v: only finite numbers can be summarized", s.count+1, x)
	}
	s.count++
	if s.count == 1 {
		s.min, s.max = x, x
	} else {
		s.min, s.max = math.Min(s.min, x), math.Max(s.max, x)
	}
	delta := x - s.mean
	s.mean += delta / float64(s.count)
	s.m2 += delta * (x - s.mean)
	t := s.sum + x
	if math.Abs(s.sum) >= math.Abs(x) {
		s.cs += (s.sum - t) + x
	} else {
		s.cs += (x - t) + s.sum
	}
	s.sum = t
	return nil
}

func (s *stats) summary() *pb.Summary {
	if s.count == 0 {
		return &pb.Summary{}
	}
	return &pb.Summary{Count: s.count, Sum: s.sum + s.cs, Mean: s.mean, Min: s.min, Max: s.max, Variance: s.m2 / float64(s.count)}
}

func mulmod(a, b, m uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi, lo, m)
}

func powmod(a, e, m uint64) uint64 {
	r := uint64(1)
	for a %= m; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = mulmod(r, a, m)
		}
		a = mulmod(a, a, m)
	}
	return r
}

// isPrime: Miller–Rabin with bases that decide every u64.
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for _, p := range []uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37} {
		if n%p == 0 {
			return n == p
		}
	}
	d, s := n-1, 0
	for d%2 == 0 {
		d, s = d/2, s+1
	}
	for _, a := range []uint64{2, 325, 9375, 28178, 450775, 9780504, 1795265022} {
		a %= n
		if a == 0 {
			continue
		}
		x := powmod(a, d, n)
		if x == 1 || x == n-1 {
			continue
		}
		composite := true
		for i := 0; i < s-1; i++ {
			x = mulmod(x, x, n)
			if x == n-1 {
				composite = false
				break
			}
		}
		if composite {
			return false
		}
	}
	return true
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// rho: a non-trivial divisor of an odd composite n (Pollard's rho, Floyd's cycle finding).
func rho(n uint64) uint64 {
	for c := uint64(1); ; c++ {
		f := func(x uint64) uint64 { return (mulmod(x, x, n) + c) % n }
		x, y, d := uint64(2), uint64(2), uint64(1)
		for d == 1 {
			x, y = f(x), f(f(y))
			if x > y {
				d = gcd(x-y, n)
			} else {
				d = gcd(y-x, n)
			}
		}
		if d != n {
			return d
		}
	}
}

func factorize(n uint64) []uint64 {
	var out []uint64
	for _, p := range []uint64{2, 3, 5} {
		for n%p == 0 {
			out, n = append(out, p), n/p
		}
	}
	var split func(uint64)
	split = func(m uint64) {
		if m == 1 {
			return
		}
		if isPrime(m) {
			out = append(out, m)
			return
		}
		d := rho(m)
		split(d)
		split(m / d)
	}
	split(n)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type calculator struct {
	pb.UnimplementedCalculatorServer
}

func (calculator) Calculate(_ context.Context, r *pb.Request) (*pb.Response, error) {
	result, err := calculate(r.Num1, r.Operator, r.Num2)
	if err != nil {
		return nil, err
	}
	return &pb.Response{Result: result}, nil
}

func (calculator) CalculateStream(stream pb.Calculator_CalculateStreamServer) error {
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		response := &pb.Response{}
		if result, err := calculate(r.Num1, r.Operator, r.Num2); err != nil {
			s := status.Convert(err)
			response.Error = &pb.Error{Code: int32(s.Code()), Message: s.Message()}
		} else {
			response.Result = result
		}
		if err := stream.Send(response); err != nil {
			return err
		}
	}
}

func (calculator) Summarize(stream pb.Calculator_SummarizeServer) error {
	var s stats
	for {
		n, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(s.summary())
		} else if err != nil {
			return err
		}
		if err := s.push(n.Value); err != nil {
			return err
		}
	}
}

func (calculator) Factorize(r *pb.FactorizeRequest, stream pb.Calculator_FactorizeServer) error {
	if r.Number < 2 {
		return status.Errorf(codes.InvalidArgument, "%d has no prime factors: give a number of 2 or more", r.Number)
	}
	for _, p := range factorize(r.Number) {
		if err := stream.Send(&pb.Factor{Prime: p}); err != nil {
			return err
		}
	}
	return nil
}

func (calculator) RunningSummary(stream pb.Calculator_RunningSummaryServer) error {
	var s stats
	for {
		n, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := s.push(n.Value); err != nil {
			return err
		}
		if err := stream.Send(s.summary()); err != nil {
			return err
		}
	}
}

// serverTLS is TLS with certFile and keyFile, requiring a client certificate signed by clientCA
// when it is given (mutual TLS).
func serverTLS(certFile, keyFile, clientCA string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	config := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", clientCA)
		}
		config.ClientCAs = pool
		config.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(config), nil
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind")
	port := flag.Int("port", 50051, "port to bind; 0 picks a free one")
	minTime := flag.Duration("keepalive-min-time", 5*time.Minute, "least time between a client's pings (grpc-go's keepalive enforcement); sooner, three times, is GOAWAY too_many_pings")
	permit := flag.Bool("keepalive-permit-without-stream", false, "let clients ping while no call is open")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM); needs -tls-key")
	keyFile := flag.String("tls-key", "", "the private key of -tls-cert (PEM)")
	clientCA := flag.String("client-ca", "", "mutual TLS: require a client certificate signed by this CA (PEM)")
	flag.Parse()
	listener, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	options := []grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             *minTime,
		PermitWithoutStream: *permit,
	})}
	if *certFile != "" || *keyFile != "" {
		creds, err := serverTLS(*certFile, *keyFile, *clientCA)
		if err != nil {
			log.Fatalf("tls: %v", err)
		}
		options = append(options, grpc.Creds(creds))
	} else if *clientCA != "" {
		log.Fatalf("-client-ca needs -tls-cert and -tls-key")
	}
	server := grpc.NewServer(options...)
	pb.RegisterCalculatorServer(server, calculator{})
	fmt.Printf("listening on %s\n", listener.Addr())
	os.Stdout.Sync()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-signals; server.GracefulStop() }()
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
