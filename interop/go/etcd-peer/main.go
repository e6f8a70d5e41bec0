// Command etcd-peer puts etcd's own Go naming packages in front of calcmesh.
//
//	etcd-peer -etcd 127.0.0.1:2379 -service calculator watch
//	    dials etcd:///calculator through go.etcd.io/etcd/client/v3/naming/resolver with grpc-go's
//	    round_robin, calls grpc.health.v1.Health/Check over and over, and after every 100 calls
//	    prints the endpoints that answered them (the calcmesh-endpoint response header), sorted
//	    and comma-separated, on one line. Runs until killed.
//	etcd-peer -etcd 127.0.0.1:2379 -service calculator register 127.0.0.1:50051
//	    adds SERVICE/ADDR with client/v3/naming/endpoints, prints "registered", and keeps it
//	    until stdin closes.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

func main() {
	etcd := flag.String("etcd", "127.0.0.1:2379", "etcd's client address")
	service := flag.String("service", "calculator", "the service prefix in etcd")
	flag.Parse()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{*etcd}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer client.Close()
	switch flag.Arg(0) {
	case "watch":
		watch(client, *service)
	case "register":
		register(client, *service, flag.Arg(1))
	default:
		log.Fatalf("usage: etcd-peer [-etcd ADDR] [-service NAME] watch | register ADDR")
	}
}

func watch(client *clientv3.Client, service string) {
	builder, err := resolver.NewBuilder(client)
	if err != nil {
		log.Fatalf("resolver: %v", err)
	}
	conn, err := grpc.NewClient("etcd:///"+service,
		grpc.WithResolvers(builder),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	if err != nil {
		log.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	out := bufio.NewWriter(os.Stdout)
	for {
		seen := map[string]bool{}
		for i := 0; i < 100; i++ {
			var header metadata.MD
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.WaitForReady(true))
			cancel()
			if err == nil && len(header.Get("calcmesh-endpoint")) > 0 {
				seen[header.Get("calcmesh-endpoint")[0]] = true
			}
			time.Sleep(2 * time.Millisecond) // a steady trickle, not a flood
		}
		names := make([]string, 0, len(seen))
		for name := range seen {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintln(out, strings.Join(names, ","))
		out.Flush()
	}
}

func register(client *clientv3.Client, service, addr string) {
	manager, err := endpoints.NewManager(client, service)
	if err != nil {
		log.Fatalf("manager: %v", err)
	}
	ctx := context.Background()
	if err := manager.AddEndpoint(ctx, service+"/"+addr, endpoints.Endpoint{Addr: addr}); err != nil {
		log.Fatalf("add endpoint: %v", err)
	}
	fmt.Println("registered")
	io.Copy(io.Discard, os.Stdin)
	if err := manager.DeleteEndpoint(ctx, service+"/"+addr); err != nil {
		log.Fatalf("delete endpoint: %v", err)
	}
}
