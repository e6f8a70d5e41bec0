// Command channelz reads a server's channelz (grpc.channelz.v1) with grpc-go's own generated
// client, as gRPC's debugging tools do, and prints everything it found as one JSON document:
//
//	{"servers": [{"server": Server, "sockets": [Socket]}],
//	 "channels": [{"channel": Channel, "subchannels": [{"subchannel": Subchannel, "sockets": [Socket]}]}]}
//
// Every message is printed with protojson (field names as in channelz.proto). It walks every
// RPC: GetServers, GetServer, GetServerSockets, GetSocket, GetTopChannels, GetChannel and
// GetSubchannel. Any RPC failing ends it with exit status 1 and the status on stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func raw(m proto.Message) json.RawMessage {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		log.Fatalf("marshal: %v", err)
	}
	return b
}

type reader struct {
	ctx    context.Context
	client channelzpb.ChannelzClient
}

func (r reader) socket(id int64) json.RawMessage {
	got, err := r.client.GetSocket(r.ctx, &channelzpb.GetSocketRequest{SocketId: id})
	if err != nil {
		log.Fatalf("GetSocket(%d): %v", id, err)
	}
	return raw(got.GetSocket())
}

func (r reader) servers() []map[string]any {
	var out []map[string]any
	list, err := r.client.GetServers(r.ctx, &channelzpb.GetServersRequest{})
	if err != nil {
		log.Fatalf("GetServers: %v", err)
	}
	for _, listed := range list.GetServer() {
		id := listed.GetRef().GetServerId()
		server, err := r.client.GetServer(r.ctx, &channelzpb.GetServerRequest{ServerId: id})
		if err != nil {
			log.Fatalf("GetServer(%d): %v", id, err)
		}
		refs, err := r.client.GetServerSockets(r.ctx, &channelzpb.GetServerSocketsRequest{ServerId: id})
		if err != nil {
			log.Fatalf("GetServerSockets(%d): %v", id, err)
		}
		sockets := []json.RawMessage{}
		for _, ref := range refs.GetSocketRef() {
			sockets = append(sockets, r.socket(ref.GetSocketId()))
		}
		out = append(out, map[string]any{"server": raw(server.GetServer()), "sockets": sockets})
	}
	return out
}

func (r reader) channels() []map[string]any {
	var out []map[string]any
	list, err := r.client.GetTopChannels(r.ctx, &channelzpb.GetTopChannelsRequest{})
	if err != nil {
		log.Fatalf("GetTopChannels: %v", err)
	}
	for _, listed := range list.GetChannel() {
		id := listed.GetRef().GetChannelId()
		channel, err := r.client.GetChannel(r.ctx, &channelzpb.GetChannelRequest{ChannelId: id})
		if err != nil {
			log.Fatalf("GetChannel(%d): %v", id, err)
		}
		subchannels := []map[string]any{}
		for _, ref := range channel.GetChannel().GetSubchannelRef() {
			sub, err := r.client.GetSubchannel(r.ctx, &channelzpb.GetSubchannelRequest{SubchannelId: ref.GetSubchannelId()})
			if err != nil {
				log.Fatalf("GetSubchannel(%d): %v", ref.GetSubchannelId(), err)
			}
			sockets := []json.RawMessage{}
			for _, s := range sub.GetSubchannel().GetSocketRef() {
				sockets = append(sockets, r.socket(s.GetSocketId()))
			}
			subchannels = append(subchannels, map[string]any{"subchannel": raw(sub.GetSubchannel()), "sockets": sockets})
		}
		out = append(out, map[string]any{"channel": raw(channel.GetChannel()), "subchannels": subchannels})
	}
	return out
}

func main() {
	target := flag.String("target", "127.0.0.1:50050", "host:port serving grpc.channelz.v1.Channelz (plaintext)")
	flag.Parse()
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("dial %s: %v", *target, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := reader{ctx: ctx, client: channelzpb.NewChannelzClient(conn)}
	out := map[string]any{"servers": r.servers(), "channels": r.channels()}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
