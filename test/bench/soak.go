package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// soakRow is one load run of the soak and the event that happened during it.
type soakRow struct {
	at     time.Duration
	event  string
	r      *loadResult
	rssKiB int64
}

// soakEvents are what happens to the broker during load runs, in turn: each
// must leave it serving without a failed request.
var soakEvents = []struct {
	name string
	do   func(ctx context.Context, e *env, pid int, n int) error
}{
	{"SIGHUP", func(_ context.Context, _ *env, pid int, _ int) error { return syscall.Kill(pid, syscall.SIGHUP) }},
	{"key rotation (new key, picked up by the file watcher)", func(ctx context.Context, e *env, _ int, n int) error {
		cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "tollgate"), "keygen", "--out", filepath.Join(e.work, "keys-es"),
			"--name", fmt.Sprintf("r%03d", n), "--not-before", time.Now().Add(-time.Second).UTC().Format(time.RFC3339))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("keygen: %v: %s", err, out)
		}
		return nil
	}},
	{"policy data change (reloaded from the directory)", func(_ context.Context, e *env, _ int, n int) error {
		data := fmt.Sprintf(`{"registry": {"projects": {
  "team":    {"public": false, "members": {"alice": "developer", "soak%d": "guest"}},
  "library": {"public": true,  "members": {"alice": "maintainer"}}
}, "system_admins": {"users": [], "groups": []}}}
`, n)
		return os.WriteFile(filepath.Join(e.work, "policy", "data.json"), []byte(data), 0o644)
	}},
	{"htpasswd user added (reloaded)", func(ctx context.Context, e *env, _ int, n int) error {
		cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "tollgate"), "htpasswd", "add", "--cost", "4",
			filepath.Join(e.work, "htpasswd"), fmt.Sprintf("soak%d", n))
		cmd.Stdin = strings.NewReader("soak-password\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("htpasswd add: %v: %s", err, out)
		}
		return nil
	}},
}

// soak runs mixed load against one tollgate (ES256) for o.soak, in runs of
// o.soakRound, with a reload, a key rotation, a policy change or a new user
// halfway through each run, and reports errors and RSS over time. It fails when any
// request failed or when RSS kept growing.
func soak(ctx context.Context, o options, w io.Writer) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tollgate-soak-")
	if err != nil {
		return err
	}
	e := &env{o: o, root: root, work: work, bin: filepath.Join(work, "bin")}
	defer e.cleanup()
	step("building tollgate and test/load")
	for name, pkg := range map[string]string{"tollgate": "./cmd/tollgate", "load": "./test/load"} {
		if err := e.goCmd(ctx, "build", "-o", filepath.Join(e.bin, name), pkg); err != nil {
			return err
		}
	}
	step("fixture: keys, %d bcrypt cost-10 users, default policy", o.users)
	if err := e.fixture(ctx); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cfg := filepath.Join(work, "tollgate.yaml")
	// No throttle: the load tool's distinct users all come from 127.0.0.1.
	if err := os.WriteFile(cfg, []byte(tollgateConfig(addr, "keys-es", work, time.Second)+"throttle: {enabled: false}\n"), 0o644); err != nil {
		return err
	}
	cmd, err := e.spawn("ES256", filepath.Join(e.bin, "tollgate"), "serve", "--config", cfg)
	if err != nil {
		return err
	}
	if _, err := waitReady(ctx, "http://"+addr+"/readyz"); err != nil {
		return err
	}
	t := target{"tollgate", "ES256", "http://" + addr + "/token", cmd.Process.Pid}
	step("soak: %s of mixed load in %s runs against %s", o.soak, o.soakRound, addr)

	var rows []soakRow
	start := time.Now()
	e.o.duration = o.soakRound
	for n := 0; time.Since(start) < o.soak && ctx.Err() == nil; n++ {
		// The event happens halfway through the run, under load.
		event, evErr := "-", make(chan error, 1)
		if n > 0 {
			ev := soakEvents[(n-1)%len(soakEvents)]
			event = ev.name
			go func() {
				select {
				case <-time.After(o.soakRound / 2):
					evErr <- ev.do(ctx, e, t.pid, n)
				case <-ctx.Done():
					evErr <- ctx.Err()
				}
			}()
		} else {
			evErr <- nil
		}
		r, err := e.load(ctx, t, "password=2,anonymous=2,refresh=1,distinct=1")
		if err := errors.Join(err, <-evErr); err != nil {
			return err
		}
		rows = append(rows, soakRow{at: time.Since(start).Round(time.Second), event: event, r: r, rssKiB: r.RSSEndKB})
		step("%6s  %-55s %8.0f tokens/s  %d errors  p99 %s  RSS %d MiB",
			time.Since(start).Round(time.Second), event, r.TokensPerS, r.Errors, fmtDur(r.P99us), r.RSSEndKB/1024)
	}
	return printSoak(w, rows)
}

func printSoak(w io.Writer, rows []soakRow) error {
	fmt.Fprintln(w, "| elapsed | event during the run | tokens/s | errors | p99 | RSS MiB |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	var requests, errs int64
	for _, r := range rows {
		requests += r.r.Requests
		errs += r.r.Errors
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %d |\n", r.at, r.event, fmtRate(r.r.TokensPerS), r.r.Errors, fmtDur(r.r.P99us), r.rssKiB/1024)
	}
	if len(rows) < 4 {
		return fmt.Errorf("soak too short: %d runs", len(rows))
	}
	// Flat: the peak of the second half is at most 20% above the peak of the
	// second quarter (caches fill during the first).
	peak := func(rs []soakRow) int64 {
		var m int64
		for _, r := range rs {
			m = max(m, r.rssKiB)
		}
		return m
	}
	q, h := len(rows)/4, len(rows)/2
	quarter, half := peak(rows[q:h]), peak(rows[h:])
	fmt.Fprintf(w, "\n%d requests, %d errors; RSS peak %d MiB in the second quarter, %d MiB in the second half\n",
		requests, errs, quarter/1024, half/1024)
	switch {
	case errs > 0:
		return fmt.Errorf("%d requests failed during the soak", errs)
	case float64(half) > 1.2*float64(quarter):
		return fmt.Errorf("RSS grew from %d to %d MiB: not flat", quarter/1024, half/1024)
	}
	return nil
}
