package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

const alertRules = "deploy/prometheus/tollgate-alerts.yaml"

// TestAlertRules: the shipped rules pass `promtool check rules`, each
// alert fires (and stays quiet) as testdata/alerts_test.yaml expects, and
// every tollgate metric they name is one the broker exports.
func TestAlertRules(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	rules := filepath.Join(root(t), alertRules)
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yaml")
	cmd.Dir = filepath.Join(root(t), "test", "deploy", "testdata")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	text, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	names := regexp.MustCompile(`\btollgate_[a-z_]+`).FindAllString(string(text), -1)
	if len(names) == 0 {
		t.Fatal("the rules name no tollgate metric")
	}
	for _, name := range names {
		// A histogram (all of them are durations, named _seconds) exports
		// its _count, _sum and _bucket series.
		base := regexp.MustCompile(`_(count|sum|bucket)$`).ReplaceAllString(name, "")
		if !exported[name] && !(exported[base] && strings.HasSuffix(base, "_seconds")) {
			t.Errorf("%s names %s, which the broker does not export", alertRules, name)
		}
	}
}

// exportedMetrics is every metric name declared in the broker's non-test
// Go sources (Name: "..." in metric options, NewDesc("...")).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(tollgate_[a-z_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(root(t), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metric declarations: %v", len(out), out)
	}
	return out
}
