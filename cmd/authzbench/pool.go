package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// pool spreads calls over a few HTTP/2 connections, as Envoy does.
type pool struct {
	clients []authv3.AuthorizationClient
	conns   []*grpc.ClientConn
	next    atomic.Uint64
}

// rawCodec passes bytes through: requests are marshalled once, answers not decoded. Of an
// answer it keeps the first two bytes, which say whether it is an OK.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[2]byte)) = [2]byte{}
	copy((*(v.(*[2]byte)))[:], data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// check sends a pre-marshalled CheckRequest and reports whether the answer is an OK: the first
// bytes of a CheckResponse are its status, and an OK status is empty (code 0 is not encoded).
func (p *pool) check(raw []byte) (bool, error) {
	cc := p.conns[p.next.Add(1)%uint64(len(p.conns))]
	var out [2]byte
	err := cc.Invoke(context.Background(), "/envoy.service.auth.v3.Authorization/Check", &raw, &out, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return false, err
	}
	// field 1 (status), wire type 2: 0x0a, then its length; an OK status is empty: "0a 00".
	return out == [2]byte{0x0a, 0x00}, nil
}

func dialPool(addr string, n int) *pool {
	p := &pool{}
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err) // grpc.NewClient only fails on a malformed target, which freeAddr never makes
		}
		p.clients = append(p.clients, authv3.NewAuthorizationClient(cc))
		p.conns = append(p.conns, cc)
	}
	return p
}

func (p *pool) client() authv3.AuthorizationClient {
	return p.clients[p.next.Add(1)%uint64(len(p.clients))]
}

// verify checks that agentauthz allows every request of sc.
func verify(p *pool, sc scenario) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reqs := append([][]byte{sc.raw}, sc.alt...)
	for _, raw := range reqs {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return err
		}
		resp, err := p.client().Check(ctx, &req, grpc.WaitForReady(true))
		if err != nil {
			return err
		}
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("%s: agentauthz denied %s%s: %s", sc.name, req.GetAttributes().GetRequest().GetHttp().GetHost(),
				req.GetAttributes().GetRequest().GetHttp().GetPath(), resp.GetDeniedResponse().GetBody())
		}
	}
	return nil
}
