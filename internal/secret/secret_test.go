package secret

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveFromValueEnvOrFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\n"), 0o600)
	t.Setenv("TOLLGATE_TEST_SECRET", "from-env")
	for _, tc := range []struct {
		value         Secret
		env, file     string
		want          Secret
		wantErrSubstr string
	}{
		{value: "inline", want: "inline"},
		{env: "TOLLGATE_TEST_SECRET", want: "from-env"},
		{file: "pw", want: "from-file"},
		{env: "TOLLGATE_TEST_UNSET_VARIABLE", wantErrSubstr: "not set"},
		{file: "missing", wantErrSubstr: "no such file"},
		{value: "inline", env: "TOLLGATE_TEST_SECRET", wantErrSubstr: "only one"},
	} {
		got, err := Resolve(tc.value, tc.env, tc.file, dir)
		if tc.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
				t.Errorf("%+v: err %v, want %q", tc, err, tc.wantErrSubstr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: got %q, %v", tc, string(got), err)
		}
	}
}

func TestSecretIsRedactedInFmtAndSlog(t *testing.T) {
	s := Secret("hunter2")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "password", s)
	fmt.Fprintf(&buf, "%v %s %#v %+v", s, s, s, struct{ Password Secret }{s})
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("secret printed: %s", buf.String())
	}
}
