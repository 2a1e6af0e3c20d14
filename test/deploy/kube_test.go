package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// TestHelmChartAgainstAPIServer has a real kube-apiserver (on Debian's
// etcd) accept the chart's manifests over a matrix of values, with
// kubectl's strict field validation: what helm lint and helm template
// cannot see (a field in the wrong place, a wrong type, an invalid name).
// kube-apiserver is built by scripts/build-kube-apiserver.sh.
func TestHelmChartAgainstAPIServer(t *testing.T) {
	kubectl, kubeconfig := newAPIServer(t)
	t.Run("install as docs/operations.md says", func(t *testing.T) { installAsDocumented(t, kubectl, kubeconfig) })
	if out, err := kubectl(nil, "create", "namespace", "tollgate"); err != nil {
		t.Fatalf("kubectl create namespace: %v\n%s", err, out)
	}
	if out, err := kubectl(nil, "apply", "-f", filepath.Join("testdata", "servicemonitor-crd.yaml")); err != nil {
		t.Fatalf("kubectl apply the ServiceMonitor CRD: %v\n%s", err, out)
	}
	if out, err := kubectl(nil, "wait", "--for=condition=Established", "--timeout=20s", "crd/servicemonitors.monitoring.coreos.com"); err != nil {
		t.Fatalf("the ServiceMonitor CRD: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name string
		sets []string
	}{
		{"defaults", nil},
		{"replicas and redis", []string{"replicaCount=3", "config.redis.addr=redis:6379", "redisPassword.existingSecret=redis", "podDisruptionBudget.minAvailable=50%"}},
		{"ingress", []string{"ingress.enabled=true", "ingress.className=nginx", "ingress.annotations.a=b", "ingress.tls[0].secretName=tls"}},
		{"servicemonitor", []string{"serviceMonitor.enabled=true", "serviceMonitor.interval=15s", "serviceMonitor.labels.release=prom"}},
		{"existing claim", []string{"state.existingClaim=tollgate-state", "config.state_dir=/data"}},
		{"extras", []string{"htpasswd.existingSecret=users", "bundleToken.existingSecret=bundle",
			"extraVolumes[0].name=ldap-ca", "extraVolumes[0].secret.secretName=ldap-ca",
			"extraVolumeMounts[0].name=ldap-ca", "extraVolumeMounts[0].mountPath=/etc/tollgate/ldap-ca", "extraVolumeMounts[0].readOnly=true",
			"extraEnv[0].name=LDAP_BIND_PASSWORD", "extraEnv[0].valueFrom.secretKeyRef.name=ldap", "extraEnv[0].valueFrom.secretKeyRef.key=password",
			"extraEnvFrom[0].secretRef.name=tollgate-env"}},
		{"policy configmap", policyValues(t)},
		{"policy existing configmap", []string{"policy.existingConfigMap=tollgate-policy", "config.policy.source=/etc/tollgate/policy"}},
		{"metrics on 0.0.0.0", []string{"config.metrics.listen=0.0.0.0:9101", "serviceMonitor.enabled=true"}},
		{"metrics on the token port", []string{"config.metrics=null", "serviceMonitor.enabled=true", "service.type=NodePort"}},
		{"shared service account", []string{"serviceAccount.create=false", "serviceAccount.name=shared", "nodeSelector.disk=ssd",
			"tolerations[0].key=dedicated", "tolerations[0].operator=Exists", "tolerations[0].effect=NoSchedule"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifests, errOut := helmTemplateText(t, tc.sets...)
			if manifests == nil {
				t.Fatalf("helm template: %s", errOut)
			}
			if out, err := kubectl(manifests, "apply", "--dry-run=server", "-n", "tollgate", "-f", "-"); err != nil {
				t.Errorf("the API server refuses the chart: %v\n%s", err, out)
			}
		})
	}

	// The check can fail: a misspelt field in the pod and in the
	// ServiceMonitor are refused, not dropped with a warning.
	manifests, _ := helmTemplateText(t, "serviceMonitor.enabled=true")
	for _, typo := range []struct{ before, after, field string }{
		{"      serviceAccountName:", "      serviceAcountName: x\n      serviceAccountName:", `unknown field "spec.template.spec.serviceAcountName"`},
		{"      path: /metrics", "      path: /metrics\n      scrapeTimout: 5s", `unknown field "spec.endpoints[0].scrapeTimout"`},
	} {
		bad := strings.Replace(string(manifests), typo.before, typo.after, 1)
		if bad == string(manifests) {
			t.Fatalf("no %q in the rendered chart", typo.before)
		}
		out, err := kubectl([]byte(bad), "apply", "--dry-run=server", "-n", "tollgate", "-f", "-")
		if err == nil || !strings.Contains(string(out), typo.field) {
			t.Errorf("a manifest with %s: %v\n%s", typo.field, err, out)
		}
	}
}

// kubectlFunc runs kubectl against the test's API server with stdin and
// arguments, and returns its combined output.
type kubectlFunc func(stdin []byte, args ...string) ([]byte, error)

// newAPIServer starts etcd and kube-apiserver on loopback ports in a
// temporary directory, waits for /readyz, and returns a kubectl for it and
// its kubeconfig file.
func newAPIServer(t *testing.T) (kubectlFunc, string) {
	t.Helper()
	etcd := testenv.Tool(t, "etcd")
	apiserver := testenv.Tool(t, "kube-apiserver")
	kubectl := testenv.Tool(t, "kubectl")
	dir := t.TempDir()

	client, peer := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)), fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	start(t, dir, "etcd", etcd, "--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=test="+peer)

	// One RSA key signs and verifies service-account tokens; an admin
	// token in system:masters is kubectl's credential.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	const token = "tollgate-test-admin"
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"))
	port := testenv.FreePort(t)
	start(t, dir, "kube-apiserver", apiserver, "--etcd-servers="+client,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprint("--secure-port=", port),
		"--cert-dir="+filepath.Join(dir, "certs"), "--token-auth-file="+tokens, "--authorization-mode=AlwaysAllow",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey, "--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false",
		// No controller-manager here makes the namespaces' default ServiceAccounts.
		"--disable-admission-plugins=ServiceAccount")

	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	waitReady(t, dir, server+"/readyz", token)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, server, token)))
	return func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		return cmd.CombinedOutput()
	}, kubeconfig
}

// installAsDocumented runs the sh block of docs/operations.md's "Install on
// Kubernetes" as written, in a checkout-like working directory, with two
// changes: its own namespace (the matrix below uses "tollgate"), and `get`
// for `rollout status`, which would wait for pods no controller makes here.
// Then the objects it made are where the values put them.
func installAsDocumented(t *testing.T, kubectl kubectlFunc, kubeconfig string) {
	script := docSection(t, "Install on Kubernetes")
	for _, r := range []struct{ old, new string }{
		{"kubectl -n tollgate rollout status deployment/tollgate", "kubectl -n tollgate get deployment/tollgate"},
		{"namespace tollgate", "namespace tollgate-docs"},
		{"-n tollgate ", "-n tollgate-docs "},
	} {
		if !strings.Contains(script, r.old) {
			t.Fatalf("the documented install has no %q any more: update this test", r.old)
		}
		script = strings.ReplaceAll(script, r.old, r.new)
	}
	work, bin := t.TempDir(), t.TempDir()
	for _, d := range []string{"policies", "deploy"} {
		if err := os.Symlink(filepath.Join(root(t), d), filepath.Join(work, d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(build(t), filepath.Join(bin, "tollgate")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+kubeconfig, "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"), "PASSWORD=s3cret-passw0rd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the documented install failed: %v\n%s", err, out)
	}
	out, err := kubectl(nil, "-n", "tollgate-docs", "get", "deployment/tollgate", "-o",
		`jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.volumes[*].secret.secretName} {.spec.template.spec.volumes[*].configMap.name}`)
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	for _, want := range []string{"registry.example.com/platform/tollgate:1.0.0", "tollgate-keys", "tollgate-users", "tollgate-policy"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the installed Deployment lacks %q: %s", want, out)
		}
	}
	if out, err := kubectl(nil, "-n", "tollgate-docs", "get", "ingress/tollgate", "-o", "jsonpath={.spec.rules[0].host}{.spec.rules[0].http.paths[0].path}"); err != nil || string(out) != "registry.example.com/token" {
		t.Errorf("the Ingress serves %q (%v), want registry.example.com/token", out, err)
	}
}

// docSection returns the shell of the sh blocks of docs/operations.md's
// section with this heading.
func docSection(t *testing.T, heading string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("docs/operations.md has no %q section", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var script strings.Builder
	in := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			in = !in && line == "```sh"
		case in:
			script.WriteString(line + "\n")
		}
	}
	return script.String()
}

// start runs a server with its output in dir/name.log and stops it by PID
// when the test ends (before dir is removed: cleanups run last first).
func start(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
}

// waitReady polls url until it answers 200, showing the servers' logs if
// it never does.
func waitReady(t *testing.T, dir, url, token string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the API server's self-signed certificate
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		log, _ := os.ReadFile(filepath.Join(dir, name+".log"))
		t.Logf("%s.log (end):\n%s", name, tail(log, 3000))
	}
	t.Fatalf("%s not ready in 60 s", url)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
