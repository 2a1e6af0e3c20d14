package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer is a log that a server's goroutines write while the test
// reads it; a bytes.Buffer is not safe for that. Its zero value is empty.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
