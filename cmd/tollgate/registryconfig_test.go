package main

import "testing"

func TestRealmWarning(t *testing.T) {
	if realmWarning("http://127.0.0.1:5001/token") == "" || realmWarning("http://10.1.2.3/token") == "" {
		t.Error("no warning for a private IP literal realm")
	}
	if w := realmWarning("https://registry.example.com/token"); w != "" {
		t.Errorf("warning for a public name: %s", w)
	}
	if w := realmWarning("http://localhost:5001/token"); w != "" {
		t.Errorf("warning for localhost: %s", w)
	}
}
