// Package deploy checks the deployment files: the container image (built
// FROM scratch and run with podman), the systemd unit (verified, then
// installed and started as docs/operations.md says), and the Helm chart
// (helm lint, helm template, and the rendered configuration loaded by
// tollgate itself).
package deploy

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/test/testenv"
)

func root(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// build compiles tollgate as `make image` does and returns the binary.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tollgate")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/tollgate")
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDockerfileBuildIsStaticAndNonRoot: the Dockerfile pulls nothing (every
// stage is FROM scratch) and runs as a numeric non-root user, and `make
// image` builds a static binary (no interpreter, no shared libraries: it
// runs on an empty base).
func TestDockerfileBuildIsStaticAndNonRoot(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllSubmatch(df, -1)
	if len(from) == 0 {
		t.Error("Dockerfile has no FROM")
	}
	for _, m := range from {
		if string(m[1]) != "scratch" {
			t.Errorf("Dockerfile: FROM %s needs a registry; build FROM scratch", m[1])
		}
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).Match(df) {
		t.Error("Dockerfile lacks USER 65532:65532 (numeric, so runAsNonRoot can check it)")
	}
	mk, err := os.ReadFile(filepath.Join(root(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\tCGO_ENABLED=0 \$\(GO\) build .*-X main.version=\$\(VERSION\)`).Match(mk) {
		t.Error("make image does not build with CGO_ENABLED=0 and the version")
	}
	f, err := elf.Open(build(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader: it would not run FROM scratch")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary links %v", libs)
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(root(t), "deploy", "systemd", "tollgate.service"))
	if err != nil {
		t.Fatal(err)
	}
	bin := build(t)
	// The unit names /usr/local/bin/tollgate; verify against a built binary.
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/tollgate"), []byte(bin))
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"User=tollgate", "StateDirectory=tollgate", "NoNewPrivileges=yes", "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// TestHelmChart lints and renders the chart, then has tollgate validate
// the configuration the chart renders.
func TestHelmChart(t *testing.T) {
	helm := testenv.Tool(t, "helm")
	chart := filepath.Join(root(t), "deploy", "helm", "tollgate")
	for _, sets := range [][]string{
		nil,
		{"replicaCount=3", "config.redis.addr=redis:6379", "redisPassword.existingSecret=redis"},
		{"ingress.enabled=true", "ingress.tls[0].secretName=tls", "serviceMonitor.enabled=true", "config.metrics.listen=0.0.0.0:9101"},
		{"serviceAccount.create=false", "state.existingClaim=state", "extraEnvFrom[0].secretRef.name=env"},
	} {
		args := []string{"lint", "--strict", chart}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", sets, err, out)
		}
	}
	out, err := exec.Command(helm, "template", "tg", chart,
		"--set", "bundleToken.existingSecret=bundle-token", "--set", "htpasswd.existingSecret=users",
		"--set", "config.redis.addr=redis:6379", "--set", "redisPassword.existingSecret=redis", "--set", "replicaCount=2").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	kinds := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc != nil {
			kinds[doc["kind"].(string)] = doc
		}
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
		if kinds[k] == nil {
			t.Errorf("the chart renders no %s", k)
		}
	}
	rendered := string(out)
	for _, want := range []string{"path: /readyz", "path: /healthz", "runAsNonRoot: true", "readOnlyRootFilesystem: true", "secretName: tollgate-keys"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("rendered chart lacks %q", want)
		}
	}
	cm := kinds["ConfigMap"]
	if cm == nil {
		t.FailNow()
	}
	cfg := cm["data"].(map[string]any)["config.yaml"].(string)
	for _, want := range []string{"bearer_token_file: /etc/tollgate/bundle-token/token", "addr: redis:6379", "password_file: /etc/tollgate/redis/password"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the rendered config lacks %q:\n%s", want, cfg)
		}
	}
	if !strings.Contains(rendered, "mountPath: /etc/tollgate/redis") {
		t.Error("the Redis password Secret is not mounted")
	}
	checkMounted(t, cfg)
}

// checkMounted runs `serve --check --offline` on a configuration as the
// chart mounts it: its files under /etc/tollgate (the Secrets, the keys)
// and its state_dir are made in a temporary directory that stands for /.
func checkMounted(t *testing.T, cfg string) {
	t.Helper()
	checkMountedWithPolicy(t, cfg, nil)
}

// checkMountedWithPolicy is checkMounted with a policy ConfigMap's files
// mounted at /etc/tollgate/policy as the kubelet mounts a ConfigMap: each
// file a symlink into ..data, itself a symlink to a hidden directory.
func checkMountedWithPolicy(t *testing.T, cfg string, policy map[string]string) {
	t.Helper()
	root := t.TempDir()
	if policy != nil {
		mountConfigMap(t, filepath.Join(root, "etc/tollgate/policy"), policy)
	}
	cfg = strings.ReplaceAll(cfg, "/etc/tollgate/", root+"/etc/tollgate/")
	cfg = strings.ReplaceAll(cfg, "state_dir: /", "state_dir: "+root+"/")
	for _, secret := range []string{"bundle-token/token", "redis/password"} {
		file := filepath.Join(root, "etc/tollgate", secret)
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := build(t)
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(root, "etc/tollgate/keys")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	path := filepath.Join(root, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "serve", "--config", path, "--check", "--offline").CombinedOutput(); err != nil {
		t.Fatalf("tollgate refuses the chart's configuration: %v\n%s\n%s", err, out, cfg)
	}
}

// mountConfigMap lays files out in dir as the kubelet's ConfigMap volume does.
func mountConfigMap(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	version := "..2026_11_29_10_00_00.123456789"
	if err := os.MkdirAll(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(version, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, version, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// helmTemplate renders the chart with the given --set values and returns
// the documents by kind and name ("Service/tg-tollgate"), or helm's error
// output when it refuses to render. A value beginning with "--" is passed
// as it is (--set-file=...).
func helmTemplate(t *testing.T, sets ...string) (map[string]map[string]any, string) {
	t.Helper()
	out, errOut := helmTemplateText(t, sets...)
	if out == nil {
		return nil, errOut
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc != nil {
			name := doc["metadata"].(map[string]any)["name"].(string)
			docs[doc["kind"].(string)+"/"+name] = doc
		}
	}
	return docs, ""
}

// helmTemplateText is helmTemplate's rendered text, nil when helm refuses.
func helmTemplateText(t *testing.T, sets ...string) ([]byte, string) {
	t.Helper()
	helm := testenv.Tool(t, "helm")
	args := []string{"template", "tg", filepath.Join(root(t), "deploy", "helm", "tollgate")}
	for _, s := range sets {
		if strings.HasPrefix(s, "--") {
			args = append(args, s)
		} else {
			args = append(args, "--set", s)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, stderr.String()
	}
	return out, ""
}

// dig follows a path of map keys and list indexes through a document.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no %q in %v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("no item %d in %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

// namedPort returns the port called name in a list of ports, or nil.
func namedPort(ports any, name string) map[string]any {
	list, _ := ports.([]any)
	for _, p := range list {
		if m, _ := p.(map[string]any); m["name"] == name {
			return m
		}
	}
	return nil
}

// withRedis are the values of a replicated release (the default two
// replicas need shared state).
var withRedis = []string{"config.redis.addr=redis:6379"}

// TestHelmChartMetricsPort: whatever host the metrics listener names, the
// container and the Service expose its port, by name.
func TestHelmChartMetricsPort(t *testing.T) {
	for _, listen := range []string{":9101", "0.0.0.0:9101", "127.0.0.1:9101", "[::]:9101"} {
		t.Run(listen, func(t *testing.T) {
			docs, errOut := helmTemplate(t, append(withRedis, "config.metrics.listen="+listen)...)
			if docs == nil {
				t.Fatalf("helm template: %s", errOut)
			}
			container := dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec", "containers", 0)
			if p := namedPort(dig(t, container, "ports"), "metrics"); p == nil || p["containerPort"] != 9101 {
				t.Errorf("container metrics port: %v", p)
			}
			if p := namedPort(dig(t, docs["Service/tg-tollgate"], "spec", "ports"), "metrics"); p == nil || p["port"] != 9101 || p["targetPort"] != "metrics" {
				t.Errorf("Service metrics port: %v", p)
			}
		})
	}
	docs, _ := helmTemplate(t, append(withRedis, "config.metrics=null")...)
	if p := namedPort(dig(t, docs["Service/tg-tollgate"], "spec", "ports"), "metrics"); p != nil {
		t.Errorf("metrics off, yet the Service has %v", p)
	}
}

// TestHelmChartPDBOnlyWithReplicas: a PodDisruptionBudget of minAvailable 1
// over a single replica would block every node drain.
func TestHelmChartPDBOnlyWithReplicas(t *testing.T) {
	for _, tc := range []struct {
		sets []string
		want bool
	}{
		{[]string{"replicaCount=1"}, false},
		{append([]string{"replicaCount=2"}, withRedis...), true},
		{append([]string{"replicaCount=3", "podDisruptionBudget.enabled=false"}, withRedis...), false},
	} {
		docs, errOut := helmTemplate(t, tc.sets...)
		if docs == nil {
			t.Fatalf("helm template %v: %s", tc.sets, errOut)
		}
		if got := docs["PodDisruptionBudget/tg-tollgate"] != nil; got != tc.want {
			t.Errorf("%v: PodDisruptionBudget rendered: %v, want %v", tc.sets, got, tc.want)
		}
	}
}

// TestHelmChartRefuses: values that would deploy something that cannot
// work as configured fail to render, saying why.
func TestHelmChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
		want string
	}{
		{"redis password without redis", []string{"replicaCount=1", "redisPassword.existingSecret=redis"}, "config.redis"},
		{"replicas without redis", []string{"replicaCount=2"}, "lockouts"},
		{"replicas without redis", []string{"replicaCount=3"}, "token revoke"},
		{"two policy ConfigMaps", []string{"policy.existingConfigMap=p", "policy.files.a\\.rego=x", "config.policy.source=/etc/tollgate/policy"}, "only one of them"},
		{"policy ConfigMap and a bundle URL", []string{"policy.existingConfigMap=p"}, "set config.policy.source=/etc/tollgate/policy"},
		{"policy ConfigMap and a bundle token", []string{"policy.existingConfigMap=p", "config.policy.source=/etc/tollgate/policy", "bundleToken.existingSecret=t"}, "the token is for a bundle URL"},
		{"policy directory without a ConfigMap", []string{"config.policy.source=/etc/tollgate/policy"}, "no policy is mounted there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs, errOut := helmTemplate(t, tc.sets...)
			if docs != nil {
				t.Fatalf("helm template %v renders", tc.sets)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("helm template %v: the error does not say %q:\n%s", tc.sets, tc.want, errOut)
			}
		})
	}
}

// TestHelmChartStateDirIsWritable: without Redis, `token revoke` and the
// broker share revocations.json in state_dir, which defaulted to the
// directory of config.yaml: the read-only ConfigMap mount. state_dir must
// be a writable volume's mount.
func TestHelmChartStateDirIsWritable(t *testing.T) {
	for _, sets := range [][]string{
		{"replicaCount=1"},
		{"replicaCount=1", "config.state_dir=/data"},
		{"replicaCount=1", "state.existingClaim=tollgate-state"},
	} {
		docs, errOut := helmTemplate(t, sets...)
		if docs == nil {
			t.Fatalf("helm template %v: %s", sets, errOut)
		}
		var cfg struct {
			StateDir string `yaml:"state_dir"`
		}
		text := dig(t, docs["ConfigMap/tg-tollgate"], "data", "config.yaml").(string)
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.StateDir == "" {
			t.Fatalf("%v: no state_dir: it defaults to the read-only ConfigMap directory", sets)
		}
		pod := dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec")
		var volume string
		for _, m := range dig(t, pod, "containers", 0, "volumeMounts").([]any) {
			if m := m.(map[string]any); m["mountPath"] == cfg.StateDir && m["readOnly"] != true {
				volume, _ = m["name"].(string)
			}
		}
		var source map[string]any
		for _, v := range dig(t, pod, "volumes").([]any) {
			if v := v.(map[string]any); v["name"] == volume {
				source = v
			}
		}
		if source == nil || (source["emptyDir"] == nil && source["persistentVolumeClaim"] == nil) {
			t.Errorf("%v: state_dir %s is not on a writable volume (%v)", sets, cfg.StateDir, source)
		}
		checkMounted(t, text)
	}
}

// TestHelmChartServiceAccount: the pod runs as its own ServiceAccount and
// mounts no API token (tollgate never talks to the Kubernetes API).
func TestHelmChartServiceAccount(t *testing.T) {
	docs, errOut := helmTemplate(t)
	if docs == nil {
		t.Fatalf("helm template: %s", errOut)
	}
	sa := docs["ServiceAccount/tg-tollgate"]
	if sa == nil || sa["automountServiceAccountToken"] != false {
		t.Errorf("ServiceAccount: %v", sa)
	}
	pod := dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec").(map[string]any)
	if pod["serviceAccountName"] != "tg-tollgate" || pod["automountServiceAccountToken"] != false {
		t.Errorf("pod: serviceAccountName %v, automountServiceAccountToken %v", pod["serviceAccountName"], pod["automountServiceAccountToken"])
	}
	docs, _ = helmTemplate(t, "serviceAccount.create=false", "serviceAccount.name=shared")
	if docs["ServiceAccount/tg-tollgate"] != nil || dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec", "serviceAccountName") != "shared" {
		t.Error("serviceAccount.create=false still makes one, or the pod does not use serviceAccount.name")
	}
}

// TestHelmChartIngress: the optional Ingress serves the realm where clients
// reach it: by default the first service's realm's host and path (the
// registry's host under a path, as the README recommends), and nothing else
// of the broker.
func TestHelmChartIngress(t *testing.T) {
	docs, _ := helmTemplate(t)
	if docs["Ingress/tg-tollgate"] != nil {
		t.Error("an Ingress without ingress.enabled")
	}
	for _, tc := range []struct {
		sets       []string
		host, path string
	}{
		{[]string{"ingress.enabled=true"}, "registry.example.com", "/token"},
		{[]string{"ingress.enabled=true", "ingress.host=auth.example.com", "ingress.path=/auth/token", "ingress.tls[0].secretName=tls"}, "auth.example.com", "/auth/token"},
	} {
		docs, errOut := helmTemplate(t, tc.sets...)
		if docs == nil {
			t.Fatalf("helm template %v: %s", tc.sets, errOut)
		}
		rule := dig(t, docs["Ingress/tg-tollgate"], "spec", "rules", 0)
		path := dig(t, rule, "http", "paths", 0)
		if dig(t, rule, "host") != tc.host || dig(t, path, "path") != tc.path || dig(t, path, "pathType") != "Exact" {
			t.Errorf("%v: rule %v", tc.sets, rule)
		}
		if svc := dig(t, path, "backend", "service"); dig(t, svc, "name") != "tg-tollgate" || dig(t, svc, "port", "name") != "http" {
			t.Errorf("%v: backend %v", tc.sets, svc)
		}
	}
	docs, _ = helmTemplate(t, "ingress.enabled=true", "ingress.tls[0].secretName=tls")
	if tls := dig(t, docs["Ingress/tg-tollgate"], "spec", "tls", 0); dig(t, tls, "secretName") != "tls" || dig(t, tls, "hosts", 0) != "registry.example.com" {
		t.Errorf("tls: %v", tls)
	}
}

// TestHelmChartServiceMonitor: the optional ServiceMonitor scrapes the
// Service's metrics port by name, and needs metrics on.
func TestHelmChartServiceMonitor(t *testing.T) {
	docs, errOut := helmTemplate(t, "serviceMonitor.enabled=true", "serviceMonitor.interval=15s")
	if docs == nil {
		t.Fatalf("helm template: %s", errOut)
	}
	sm := docs["ServiceMonitor/tg-tollgate"]
	if sm == nil || dig(t, sm, "apiVersion") != "monitoring.coreos.com/v1" {
		t.Fatalf("ServiceMonitor: %v", sm)
	}
	ep := dig(t, sm, "spec", "endpoints", 0)
	if dig(t, ep, "port") != "metrics" || dig(t, ep, "path") != "/metrics" || dig(t, ep, "interval") != "15s" {
		t.Errorf("endpoint: %v", ep)
	}
	if sel := dig(t, sm, "spec", "selector", "matchLabels", "app.kubernetes.io/instance"); sel != "tg" {
		t.Errorf("selector: %v", sel)
	}
	// Without a listener of their own, metrics are on the token port.
	docs, _ = helmTemplate(t, "serviceMonitor.enabled=true", "config.metrics=null")
	if port := dig(t, docs["ServiceMonitor/tg-tollgate"], "spec", "endpoints", 0, "port"); port != "http" {
		t.Errorf("metrics on the token port, yet the ServiceMonitor scrapes %v", port)
	}
	if docs, errOut := helmTemplate(t, "serviceMonitor.enabled=true", "config.metrics.enabled=false"); docs != nil || !strings.Contains(errOut, "config.metrics.enabled") {
		t.Errorf("a ServiceMonitor with metrics off renders, or the error does not say why: %s", errOut)
	}
	docs, _ = helmTemplate(t, "config.metrics.enabled=false")
	if p := namedPort(dig(t, docs["Service/tg-tollgate"], "spec", "ports"), "metrics"); p != nil {
		t.Errorf("metrics off, yet the Service has %v", p)
	}
}

// TestHelmChartExtras: extra volumes, mounts and environment reach the pod
// (an LDAP bind password, CA files, a robot store).
func TestHelmChartExtras(t *testing.T) {
	docs, errOut := helmTemplate(t,
		"extraVolumes[0].name=ldap-ca", "extraVolumes[0].secret.secretName=ldap-ca",
		"extraVolumeMounts[0].name=ldap-ca", "extraVolumeMounts[0].mountPath=/etc/tollgate/ldap-ca",
		"extraEnv[0].name=LDAP_BIND_PASSWORD", "extraEnv[0].valueFrom.secretKeyRef.name=ldap", "extraEnv[0].valueFrom.secretKeyRef.key=password",
		"extraEnvFrom[0].secretRef.name=tollgate-env")
	if docs == nil {
		t.Fatalf("helm template: %s", errOut)
	}
	pod := dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec")
	container := dig(t, pod, "containers", 0)
	found := func(list any, key, want string) bool {
		items, _ := list.([]any)
		for _, item := range items {
			if m, _ := item.(map[string]any); m[key] == want {
				return true
			}
		}
		return false
	}
	if !found(dig(t, pod, "volumes"), "name", "ldap-ca") || !found(dig(t, container, "volumeMounts"), "mountPath", "/etc/tollgate/ldap-ca") {
		t.Error("the extra volume is not mounted")
	}
	if !found(dig(t, container, "env"), "name", "LDAP_BIND_PASSWORD") {
		t.Error("the extra env is missing")
	}
	if envFrom, _ := container.(map[string]any)["envFrom"].([]any); len(envFrom) != 1 || dig(t, envFrom[0], "secretRef", "name") != "tollgate-env" {
		t.Error("the extra envFrom is missing")
	}
}

// TestHelmChartSchema: values.schema.json refuses misspelt and mistyped
// values instead of rendering a chart that silently ignores them.
func TestHelmChartSchema(t *testing.T) {
	for _, set := range []string{"replicaCont=2", "ingress.enable=true", "service.port=http", "state.existingclaim=x", "serviceAccount.create=yes", "policy.existingConfigmap=p", "policy.files.a/b=x"} {
		if docs, _ := helmTemplate(t, set); docs != nil {
			t.Errorf("helm template --set %s renders", set)
		}
	}
}

// policyValues are the values of a policy from the chart's own ConfigMap:
// the default policy's files.
func policyValues(t *testing.T) []string {
	dir := filepath.Join(root(t), "policies", "default")
	return []string{"config.policy.source=/etc/tollgate/policy",
		"--set-file=policy.files.authz\\.rego=" + filepath.Join(dir, "authz.rego"),
		"--set-file=policy.files.data\\.json=" + filepath.Join(dir, "data.json")}
}

// TestHelmChartPolicyConfigMap: a policy from policy.files (a ConfigMap the
// chart makes) or policy.existingConfigMap is mounted read-only where
// config.policy.source points, and tollgate loads it from there as the
// kubelet lays a ConfigMap out.
func TestHelmChartPolicyConfigMap(t *testing.T) {
	docs, errOut := helmTemplate(t, policyValues(t)...)
	if docs == nil {
		t.Fatalf("helm template: %s", errOut)
	}
	files := map[string]string{}
	for name, content := range dig(t, docs["ConfigMap/tg-tollgate-policy"], "data").(map[string]any) {
		files[name] = content.(string)
	}
	want, err := os.ReadFile(filepath.Join(root(t), "policies", "default", "authz.rego"))
	if err != nil {
		t.Fatal(err)
	}
	if files["authz.rego"] != string(want) || files["data.json"] == "" {
		t.Fatalf("the policy ConfigMap holds %v", files)
	}
	assertPolicyMount(t, docs, "tg-tollgate-policy")
	checkMountedWithPolicy(t, dig(t, docs["ConfigMap/tg-tollgate"], "data", "config.yaml").(string), files)

	docs, errOut = helmTemplate(t, "policy.existingConfigMap=tollgate-policy", "config.policy.source=/etc/tollgate/policy/")
	if docs == nil {
		t.Fatalf("helm template: %s", errOut)
	}
	if docs["ConfigMap/tg-tollgate-policy"] != nil {
		t.Error("policy.existingConfigMap, yet the chart makes a policy ConfigMap")
	}
	assertPolicyMount(t, docs, "tollgate-policy")
}

// assertPolicyMount checks the pod mounts ConfigMap name read-only at
// /etc/tollgate/policy.
func assertPolicyMount(t *testing.T, docs map[string]map[string]any, name string) {
	t.Helper()
	pod := dig(t, docs["Deployment/tg-tollgate"], "spec", "template", "spec")
	var volume string
	for _, m := range dig(t, pod, "containers", 0, "volumeMounts").([]any) {
		if m := m.(map[string]any); m["mountPath"] == "/etc/tollgate/policy" && m["readOnly"] == true {
			volume, _ = m["name"].(string)
		}
	}
	for _, v := range dig(t, pod, "volumes").([]any) {
		if v := v.(map[string]any); v["name"] == volume && volume != "" {
			if got := dig(t, v, "configMap", "name"); got != name {
				t.Errorf("the policy volume is ConfigMap %v, want %s", got, name)
			}
			return
		}
	}
	t.Errorf("no read-only volume at /etc/tollgate/policy (mount %q)", volume)
}
