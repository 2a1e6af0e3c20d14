package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// When serve logs to a file (stderr, in production), the lines go through
// internal/logwrite's buffer: every request's token line is out, whole, once
// serve has returned. The log is a pipe nobody reads until serve returns
// or two seconds after it was told to stop, so that lines are still
// buffered when it stops; the pipe is closed as soon as serve returns, as
// a process's stderr is when it exits.
func TestServeWritesEveryLogLineBeforeItReturns(t *testing.T) {
	addr := freeAddr(t)
	logRead, logFile, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer logRead.Close()
	logged := make(chan []byte, 1)
	reading := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		<-reading
		select {
		case <-returned:
		case <-time.After(2 * time.Second):
		}
		data, _ := io.ReadAll(logRead)
		logged <- data
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := newApp()
	app.Writer, app.ErrWriter = &testenv.SyncBuffer{}, logFile
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"tollgate", "serve", "--state-dir", t.TempDir(), "--listen", addr})
	}()
	if err := testenv.WaitReady("http://"+addr, 90*time.Second); err != nil {
		cancel()
		close(reading)
		<-done
		logFile.Close()
		close(returned)
		t.Fatalf("serve not ready: %v\n%s", err, <-logged)
	}
	const requests = 200
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/token?scope=repository:library/app:pull", nil)
			req.Header.Set("X-Request-ID", fmt.Sprintf("line-%d", i))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			} else {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	cancel()
	close(reading)
	err = <-done
	logFile.Close()
	close(returned)
	data := <-logged
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, data)
	}
	lines := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if _, rest, ok := strings.Cut(line, `"msg":"token","request_id":"line-`); ok {
			id, _, _ := strings.Cut(rest, `"`)
			if !strings.HasSuffix(line, "}") {
				t.Errorf("a broken line: %q", line)
			}
			lines[id]++
		}
	}
	for i := range requests {
		if n := lines[fmt.Sprint(i)]; n != 1 {
			t.Errorf("request line-%d: %d token lines in the log, want 1", i, n)
		}
	}
	if len(data) < 64<<10 && !t.Failed() {
		t.Fatalf("only %d bytes logged: a pipe holds 64 KiB, so nothing had to wait in the buffer and the test proves nothing", len(data))
	}
}
