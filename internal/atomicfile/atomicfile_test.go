package atomicfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

func TestConcurrentEditsLoseNoUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counter")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := atomicfile.Edit(path, 0o600, func(old []byte) ([]byte, error) {
				n, _ := strconv.Atoi(string(old))
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(path)
	if string(data) != "50" {
		t.Fatalf("counter %q after 50 concurrent increments", data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}

func TestFailedEditKeepsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := atomicfile.Write(path, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := atomicfile.Edit(path, 0o644, func([]byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "kept" {
		t.Fatalf("content %q", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != "f" && e.Name() != "f.lock" {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
}

// TestEditCreatesNothingThroughALockLink: a link left where the lock file
// goes is refused, and the file it points to is not created.
func TestEditCreatesNothingThroughALockLink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "users")
	if err := os.Symlink(filepath.Join(outside, "created"), path+".lock"); err != nil {
		t.Fatal(err)
	}
	err := atomicfile.Edit(path, 0o600, func([]byte) ([]byte, error) { return []byte("x"), nil })
	if err == nil {
		t.Error("Edit took a link as its lock")
	}
	if _, err := os.Lstat(filepath.Join(outside, "created")); err == nil {
		t.Error("the lock link's target was created")
	}
}

func TestStampChangesWithFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "a")
	missing := filepath.Join(dir, "missing")
	if err := atomicfile.Write(filepath.Join(dir, "top"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := atomicfile.Write(file, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := atomicfile.Stamp(dir, file, missing)
	if atomicfile.Stamp(dir, file, missing) != before {
		t.Fatal("the stamp changed without a change")
	}
	if err := atomicfile.Write(file, []byte("22"), 0o644); err != nil {
		t.Fatal(err)
	}
	after := atomicfile.Stamp(dir, file, missing)
	if after == before {
		t.Fatal("the stamp did not change after a write below the directory")
	}
	if err := atomicfile.Write(missing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if atomicfile.Stamp(dir, file, missing) == after {
		t.Fatal("the stamp did not change when a missing file appeared")
	}
}

// CheckWritableDir accepts a directory, or one Edit would create, and
// refuses a path below a file; it leaves nothing behind.
func TestCheckWritableDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for path, ok := range map[string]bool{dir: true, filepath.Join(dir, "new/state"): true, file: false, filepath.Join(file, "state"): false} {
		if err := atomicfile.CheckWritableDir(path); (err == nil) != ok {
			t.Errorf("CheckWritableDir(%s) = %v, want ok=%v", path, err, ok)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("probe files left behind: %v", entries)
	}
}

// A replaced file keeps the mode, owner and group an administrator gave it
// (the configuration group-readable by a service's user, say): editing a
// user into htpasswd as root must not lock the service out of the file.
func TestWriteKeepsTheReplacedFilesModeAndOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	// A group other than ours, when we may give one (as root).
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 4242
		if err := os.Chown(path, 4343, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v after replacing, want 0640", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid || (os.Geteuid() == 0 && st.Uid != 4343) {
		t.Errorf("owner %d:%d after replacing, want the replaced file's", st.Uid, st.Gid)
	}
	// A new file gets the mode asked for.
	fresh := filepath.Join(filepath.Dir(path), "fresh")
	if err := atomicfile.Write(fresh, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}
}
