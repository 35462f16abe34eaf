// Command authzbench measures agentauthz against the physics of its architecture: a no-op
// ext_authz server, built from the same grpc-go, that answers OK without looking at the request.
// It starts both as separate processes, drives them alternately with the same Envoy-shaped
// requests over loopback, and prints agentauthz/no-op ratios, since absolute figures on a shared
// machine drift:
//
//   - closed loop at a fixed concurrency: throughput;
//   - open loop at a fixed rate (half the no-op server's saturation throughput): latency
//     p50/p99/p99.9, measured from each request's scheduled start, so a stall is not hidden.
//
// Usage (from the repository root):
//
//	go run ./cmd/authzbench -d 5s -c 32 -rounds 3
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "noop" {
		os.Exit(serveNoop(os.Args[2]))
	}
	os.Exit(run())
}

type scenario struct {
	name string
	req  *authv3.CheckRequest
	// raw is req marshalled once: the load loop sends these bytes and does not decode the
	// answer (a frame of raw bytes), so the client's cost is the same whichever server answers;
	// decoding the answer is Envoy's cost, not the server's.
	raw []byte
	// allow is what agentauthz must answer; a wrong answer aborts the run.
	allow bool
}

func scenarios() []scenario {
	hdr := map[string]string{
		"authorization":     "Bearer agent-own-token",
		"user-agent":        "agent-runtime/1.0",
		"x-request-id":      "7cd45d69-b3e7-4ed5-a5ce-ae5e23339c35",
		"x-forwarded-proto": "https",
		"accept":            "application/json",
	}
	const helpdesk = "spiffe://acme.internal/agent/helpdesk"
	json4k := `{"body":"` + strings.Repeat("Restarted the VPN client. ", 150) + `"}`
	withCT := map[string]string{"content-type": "application/json"}
	for k, v := range hdr {
		withCT[k] = v
	}
	list := []scenario{
		{name: "header-only", req: extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal",
			Path: "/v1/tickets/4711", Headers: hdr}.CheckRequest(), allow: true},
		{name: "json-4k", req: extauthz.HTTPRequest{Principal: helpdesk, Method: "POST", Host: "helpdesk.acme.internal",
			Path: "/v1/tickets/4711/comments", Headers: withCT, Body: json4k}.CheckRequest(), allow: true},
	}
	for i := range list {
		raw, err := proto.Marshal(list[i].req)
		if err != nil {
			panic(err) // a CheckRequest built above always marshals
		}
		list[i].raw = raw
	}
	return list
}

type result struct {
	Target     string  `json:"target"`
	Scenario   string  `json:"scenario"`
	Mode       string  `json:"mode"`
	RPS        float64 `json:"rps"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	Errors     int64   `json:"errors"`
	WrongAnswr int64   `json:"wrong_answers"`
}

func run() int {
	dur := flag.Duration("d", 5*time.Second, "duration of each measurement")
	conc := flag.Int("c", 32, "callers in the closed loop (Envoy workers × in-flight checks)")
	conns := flag.Int("conns", 2, "HTTP/2 connections to each server, as Envoy keeps")
	rounds := flag.Int("rounds", 3, "alternating rounds per scenario; the median is reported")
	bin := flag.String("agentauthz", "", "agentauthz binary (default: built from ./cmd/agentauthz)")
	out := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	dir, err := os.MkdirTemp("", "authzbench")
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "agentauthz")
		if b, err := exec.Command("go", "build", "-o", *bin, "./cmd/agentauthz").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "authzbench: building agentauthz: %v\n%s", err, b)
			return 2
		}
	}
	authzAddr, httpAddr, noopAddr := freeAddr(), freeAddr(), freeAddr()
	authz := exec.Command(*bin, "serve", "--grpc-addr", authzAddr, "--http-addr", httpAddr,
		"--decision-log", "off", "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn")
	authz.Env = append(os.Environ(), "AGENTAUTHZ_HELPDESK_TOKEN=bench-token", "AGENTAUTHZ_DEMO_APPROVER_TOKEN=bench", "GOGC="+gogc())
	self, _ := os.Executable()
	debug.SetGCPercent(400) // the load generator's own collections add to every latency
	noop := exec.Command(self, "noop", noopAddr)
	// The same garbage-collector setting as agentauthz serve's default, so that the ceiling is
	// not lowered by a setting agentauthz does not use.
	noop.Env = append(os.Environ(), "GOGC="+gogc())
	for _, c := range []*exec.Cmd{authz, noop} {
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 2
		}
		defer func(c *exec.Cmd) { _ = c.Process.Kill(); _ = c.Wait() }(c)
	}
	if err := waitReady("http://"+httpAddr+"/readyz", 20*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench: agentauthz did not become ready:", err)
		return 2
	}
	targets := map[string]*pool{"agentauthz": dialPool(authzAddr, *conns), "noop": dialPool(noopAddr, *conns)}

	var all []result
	fmt.Printf("closed loop, %d callers, %d connections, %s per run, %d rounds (median)\n", *conc, *conns, *dur, *rounds)
	fmt.Printf("%-12s %12s %12s %8s\n", "scenario", "noop rps", "agentauthz", "ratio")
	saturation := map[string]float64{}
	for _, sc := range scenarios() {
		if err := verify(targets["agentauthz"], sc); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 1
		}
		rps := map[string][]float64{}
		for r := 0; r < *rounds; r++ {
			for _, name := range []string{"noop", "agentauthz"} {
				res := closedLoop(targets[name], sc, *conc, *dur)
				res.Target = name
				all = append(all, res)
				rps[name] = append(rps[name], res.RPS)
			}
		}
		n, a := median(rps["noop"]), median(rps["agentauthz"])
		saturation[sc.name] = n
		fmt.Printf("%-12s %12.0f %12.0f %8.2f\n", sc.name, n, a, a/n)
	}
	fmt.Printf("\nopen loop at half the no-op saturation rate, %s per run\n", *dur)
	fmt.Printf("%-12s %-11s %8s %10s %10s %10s\n", "scenario", "target", "rate", "p50 µs", "p99 µs", "p99.9 µs")
	for _, sc := range scenarios() {
		rate := saturation[sc.name] / 2
		for _, name := range []string{"noop", "agentauthz"} {
			res := openLoop(targets[name], sc, rate, *dur)
			res.Target = name
			all = append(all, res)
			fmt.Printf("%-12s %-11s %8.0f %10.0f %10.0f %10.0f\n", sc.name, name, rate, res.P50us, res.P99us, res.P999us)
		}
	}
	bad := int64(0)
	for _, r := range all {
		bad += r.Errors + r.WrongAnswr
	}
	fmt.Printf("\nerrors and wrong answers: %d\n", bad)
	if *out != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "authzbench:", err)
			return 2
		}
	}
	if bad > 0 {
		return 1
	}
	return 0
}

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

func verify(p *pool, sc scenario) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.client().Check(ctx, sc.req, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	if got := resp.GetOkResponse() != nil; got != sc.allow {
		return fmt.Errorf("%s: agentauthz answered allow=%v, want %v: %s", sc.name, got, sc.allow, resp.GetDeniedResponse().GetBody())
	}
	return nil
}

func closedLoop(p *pool, sc scenario, conc int, dur time.Duration) result {
	var done, errs, wrong atomic.Int64
	lat := make([][]time.Duration, conc)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				ok, err := p.check(sc.raw)
				switch {
				case err != nil:
					errs.Add(1)
				case ok != sc.allow:
					wrong.Add(1)
				}
				lat[i] = append(lat[i], time.Since(t0))
				done.Add(1)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := percentiles(flatten(lat))
	res.Scenario, res.Mode = sc.name, "closed"
	res.RPS = float64(done.Load()) / elapsed.Seconds()
	res.Errors, res.WrongAnswr = errs.Load(), wrong.Load()
	return res
}

func openLoop(p *pool, sc scenario, rate float64, dur time.Duration) result {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(dur / interval)
	lat := make([]time.Duration, n)
	var errs, wrong atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			ok, err := p.check(sc.raw)
			switch {
			case err != nil:
				errs.Add(1)
			case ok != sc.allow:
				wrong.Add(1)
			}
			lat[i] = time.Since(due) // from the scheduled start: stalls are not hidden
		}(i, due)
	}
	wg.Wait()
	res := percentiles(lat)
	res.Scenario, res.Mode, res.RPS = sc.name, "open", rate
	res.Errors, res.WrongAnswr = errs.Load(), wrong.Load()
	return res
}

func flatten(ls [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

func percentiles(l []time.Duration) result {
	if len(l) == 0 {
		return result{}
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(l)-1))
		return float64(l[i].Nanoseconds()) / 1e3
	}
	return result{P50us: at(0.50), P99us: at(0.99), P999us: at(0.999)}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// gogc is the GOGC both servers run with: the caller's, or agentauthz serve's default of 400.
func gogc() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return "400"
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback always has a free port
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New(resp.Status)
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// noopServer is the ceiling: it answers OK without looking at the request.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

func serveNoop(addr string) int {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzbench noop:", err)
		return 2
	}
	// The same transport settings as agentauthz's server (server.Start), so that the ceiling is
	// the same grpc-go, tuned the same way.
	s := grpc.NewServer(grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0)))))
	authv3.RegisterAuthorizationServer(s, noopServer{})
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "authzbench noop:", err)
		return 2
	}
	return 0
}
