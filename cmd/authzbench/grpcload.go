package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// measureClosed runs the closed loop against s and adds the server's CPU per request and,
// for agentauthz, its runtime's allocations per request and GC share.
func measureClosed(s *target, sc scenario, conc int, dur time.Duration) result {
	cpu0, _ := cpuTime(s.pid())
	var rt0 runtimeStats
	if s.pprofAddr != "" {
		rt0, _ = readRuntime(s.pprofAddr)
	}
	rss := sampleRSS(s.pid())
	res := closedLoop(s.pool, sc, conc, dur)
	rssMax, anon := rss.Max()
	res.RSS, res.RSSAnon = mib(rssMax), mib(anon)
	cpu1, _ := cpuTime(s.pid())
	res.Target = s.name
	n := res.RPS * dur.Seconds()
	res.CPUus = map[string]float64{"server": float64((cpu1 - cpu0).Microseconds()) / n}
	if rt0 != nil {
		if rt1, err := readRuntime(s.pprofAddr); err == nil {
			share, allocs, bytes := gcShare(rt0, rt1)
			res.GCShare, res.AllocsPerCheck, res.BytesPerCheck = share, allocs/n, bytes/n
			res.HeapLive, res.GoMemory = rt1["/gc/heap/live:bytes"]/(1<<20), rt1["/memory/classes/total:bytes"]/(1<<20)
			res.GoClasses = memoryClasses(rt1)
		}
	}
	res.Load = loadAvg()
	return res
}

// profileUnderLoad saves a CPU and an allocation profile of s while load runs.
func profileUnderLoad(c common, s *target, sc scenario, load func()) error {
	if err := os.MkdirAll(c.profile, 0o755); err != nil {
		return err
	}
	seconds := max(1, int(c.dur.Seconds())-1)
	errs := make(chan error, 1)
	go func() {
		errs <- fetchProfile(s.pprofAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), filepath.Join(c.profile, s.name+"-"+sc.name+".cpu.pprof"))
	}()
	load()
	if err := <-errs; err != nil {
		return err
	}
	return fetchProfile(s.pprofAddr, "/debug/pprof/allocs", filepath.Join(c.profile, s.name+"-"+sc.name+".allocs.pprof"))
}

// firstError keeps the first error of a run, to say what failed.
type firstError struct {
	once sync.Once
	err  error
}

func (f *firstError) set(err error) { f.once.Do(func() { f.err = err }) }

func (f *firstError) report(sc scenario, mode string, n int64) {
	if f.err != nil {
		fmt.Fprintf(os.Stderr, "authzbench: %s %s: %d errors, the first: %v\n", sc.name, mode, n, f.err)
	}
}

func closedLoop(p *pool, sc scenario, conc int, dur time.Duration) result {
	var done, errs, wrong atomic.Int64
	var first firstError
	lat := make([][]time.Duration, conc)
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := i; ctx.Err() == nil; k += conc {
				raw := sc.raw
				if len(sc.alt) > 0 && k%(len(sc.alt)+1) > 0 {
					raw = sc.alt[k%(len(sc.alt)+1)-1]
				}
				t0 := time.Now()
				ok, err := p.check(raw)
				switch {
				case err != nil:
					errs.Add(1)
					first.set(err)
				case !ok:
					wrong.Add(1)
				}
				lat[i] = append(lat[i], time.Since(t0))
				done.Add(1)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	first.report(sc, "closed loop", errs.Load())
	res := latencies(flatten(lat))
	res.Scenario, res.Mode = sc.name, "closed"
	res.RPS = float64(done.Load()) / elapsed.Seconds()
	res.Errors, res.Wrong = errs.Load(), wrong.Load()
	return res
}

// maxInFlight bounds the requests an open loop has outstanding.
const maxInFlight = 1024

func openLoop(p *pool, sc scenario, rate float64, dur time.Duration) result {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(dur / interval)
	lat := make([]time.Duration, n)
	var errs, wrong atomic.Int64
	var first firstError
	var wg sync.WaitGroup
	// At most maxInFlight requests are outstanding, so that a server slower than the rate (the
	// machine busier than when saturation was measured) fills no memory without bound; a
	// request waiting for a slot is late, and its latency, counted from its scheduled start,
	// says so.
	slots := make(chan struct{}, maxInFlight)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		slots <- struct{}{}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer func() { <-slots; wg.Done() }()
			ok, err := p.check(sc.raw)
			switch {
			case err != nil:
				errs.Add(1)
				first.set(err)
			case !ok:
				wrong.Add(1)
			}
			lat[i] = time.Since(due) // from the scheduled start: stalls are not hidden
		}(i, due)
	}
	wg.Wait()
	first.report(sc, "open loop", errs.Load())
	res := latencies(lat)
	res.Scenario, res.Mode, res.RPS = sc.name, "open", rate
	res.Errors, res.Wrong = errs.Load(), wrong.Load()
	res.Load = loadAvg()
	return res
}
