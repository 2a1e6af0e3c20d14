package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// Revocations stop refresh tokens before they expire: one token by its id
// (jti), or every token of a subject issued before a moment.
type Revocations interface {
	// Revoked reports whether the refresh token jti, issued to subject at
	// issuedAt, was revoked.
	Revoked(ctx context.Context, jti, subject string, issuedAt time.Time) (bool, error)
	// RevokeID revokes one token; the record may be dropped after until
	// (the token's expiry).
	RevokeID(ctx context.Context, jti string, until time.Time) error
	// RevokeSubject revokes every token of subject issued before at; the
	// record may be dropped after until (the longest refresh lifetime).
	RevokeSubject(ctx context.Context, subject string, at, until time.Time) error
}

// FileRevocations keeps revocations in a JSON file for a broker without
// Redis: `tollgate token revoke` edits it under a lock, the broker reloads
// it when it changes and answers from memory.
type FileRevocations struct {
	path  string
	state atomic.Pointer[revocationFile]
	stamp atomic.Value // string
}

type revocationFile struct {
	// IDs maps a jti to when its record may be dropped.
	IDs map[string]time.Time `json:"ids"`
	// Subjects maps a subject to the moment before which its tokens are
	// revoked, and when the record may be dropped.
	Subjects map[string]subjectRevocation `json:"subjects"`
}

type subjectRevocation struct {
	Before time.Time `json:"before"`
	Until  time.Time `json:"until"`
}

// OpenFileRevocations loads path; a missing file holds no revocation.
func OpenFileRevocations(path string) (*FileRevocations, error) {
	r := &FileRevocations{path: path}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func readRevocations(path string) (*revocationFile, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return parseRevocations(path, data)
}

// parseRevocations reads the file's content; nil holds no revocation.
func parseRevocations(path string, data []byte) (*revocationFile, error) {
	f := &revocationFile{IDs: map[string]time.Time{}, Subjects: map[string]subjectRevocation{}}
	if data == nil {
		return f, nil
	}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("revocations %s: %w", path, err)
	}
	if f.IDs == nil {
		f.IDs = map[string]time.Time{}
	}
	if f.Subjects == nil {
		f.Subjects = map[string]subjectRevocation{}
	}
	return f, nil
}

// Reload reads the file again; on error the loaded revocations stay.
func (r *FileRevocations) Reload() error {
	stamp := atomicfile.Stamp(r.path)
	f, err := readRevocations(r.path)
	if err != nil {
		return err
	}
	r.state.Store(f)
	r.stamp.Store(stamp)
	return nil
}

// Watch reloads the file when it changes, every interval until ctx ends.
func (r *FileRevocations) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	loaded := func() string { return r.stamp.Load().(string) }
	atomicfile.Watch(ctx, interval, r.path, loaded, r.Reload, func(err error) {
		if err != nil {
			log.Error("revocations reload failed; keeping the loaded ones", "err", err)
		}
	})
}

// Revoked implements Revocations.
func (r *FileRevocations) Revoked(_ context.Context, jti, subject string, issuedAt time.Time) (bool, error) {
	f := r.state.Load()
	if _, ok := f.IDs[jti]; ok {
		return true, nil
	}
	if s, ok := f.Subjects[subject]; ok && issuedAt.Before(s.Before) {
		return true, nil
	}
	return false, nil
}

// RevokeID implements Revocations: it edits the file (and the memory).
func (r *FileRevocations) RevokeID(_ context.Context, jti string, until time.Time) error {
	return r.edit(func(f *revocationFile) { f.IDs[jti] = until.UTC() })
}

// RevokeSubject implements Revocations.
func (r *FileRevocations) RevokeSubject(_ context.Context, subject string, at, until time.Time) error {
	return r.edit(func(f *revocationFile) { f.Subjects[subject] = subjectRevocation{Before: at.UTC(), Until: until.UTC()} })
}

// edit changes the file under an exclusive lock, dropping expired records,
// and replaces it atomically.
func (r *FileRevocations) edit(change func(*revocationFile)) error {
	err := atomicfile.Edit(r.path, 0o600, func(old []byte) ([]byte, error) {
		f, err := parseRevocations(r.path, old)
		if err != nil {
			return nil, err
		}
		change(f)
		now := time.Now()
		for id, until := range f.IDs {
			if now.After(until) {
				delete(f.IDs, id)
			}
		}
		for s, rev := range f.Subjects {
			if now.After(rev.Until) {
				delete(f.Subjects, s)
			}
		}
		data, err := json.MarshalIndent(f, "", "  ")
		return append(data, '\n'), err
	})
	if err != nil {
		return err
	}
	return r.Reload()
}
