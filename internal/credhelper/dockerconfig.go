package credhelper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// DockerConfigPath is $DOCKER_CONFIG/config.json or ~/.docker/config.json,
// the file docker, crane, oras, skopeo and podman read credHelpers from.
func DockerConfigPath() (string, error) {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the docker config: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// Register sets credHelpers[host] = "tollgate" in the docker config at
// path and removes auths[host], whose stored password or token the helper
// replaces (docker would no longer read it, and it must not stay on disk).
// It reports whether an auths entry was removed.
func Register(path, host string) (removedAuth bool, err error) {
	err = editDockerConfig(path, func(cfg map[string]json.RawMessage) error {
		helpers := map[string]string{}
		if err := decodeKey(cfg, "credHelpers", &helpers); err != nil {
			return err
		}
		helpers[host] = "tollgate"
		var auths map[string]json.RawMessage
		if err := decodeKey(cfg, "auths", &auths); err != nil {
			return err
		}
		if _, ok := auths[host]; ok {
			delete(auths, host)
			removedAuth = true
			if err := encodeKey(cfg, "auths", auths); err != nil {
				return err
			}
		}
		return encodeKey(cfg, "credHelpers", helpers)
	})
	return removedAuth, err
}

// Unregister removes credHelpers[host] when it names tollgate (another
// helper the user set there is theirs).
func Unregister(path, host string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return editDockerConfig(path, func(cfg map[string]json.RawMessage) error {
		helpers := map[string]string{}
		if err := decodeKey(cfg, "credHelpers", &helpers); err != nil {
			return err
		}
		if helpers[host] != "tollgate" {
			return nil
		}
		delete(helpers, host)
		if len(helpers) == 0 {
			delete(cfg, "credHelpers")
			return nil
		}
		return encodeKey(cfg, "credHelpers", helpers)
	})
}

// editDockerConfig runs change on the config's top-level keys under the
// atomicfile lock and writes the result back with the file's mode (0600
// for a new file), keeping every key it did not touch.
func editDockerConfig(path string, change func(map[string]json.RawMessage) error) error {
	mode := fs.FileMode(0o600)
	switch st, err := os.Lstat(path); {
	case err == nil && st.Mode()&fs.ModeSymlink != 0:
		// Replacing the link with a file would silently cut it; writing
		// through it would write where someone else chose.
		return fmt.Errorf("the docker config %s is a symbolic link: refusing to edit it; add \"credHelpers\": {...: \"tollgate\"} to its target by hand", path)
	case err == nil:
		mode = st.Mode().Perm()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("edit the docker config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create the docker config's directory: %w", err)
	}
	err := atomicfile.Edit(path, mode, func(old []byte) ([]byte, error) {
		cfg := map[string]json.RawMessage{}
		if len(bytes.TrimSpace(old)) > 0 {
			if err := json.Unmarshal(old, &cfg); err != nil {
				return nil, fmt.Errorf("not valid JSON: %w", err)
			}
		}
		if err := change(cfg); err != nil {
			return nil, err
		}
		out, err := json.MarshalIndent(cfg, "", "\t")
		return append(out, '\n'), err
	})
	if err != nil {
		return fmt.Errorf("edit the docker config %s: %w", path, err)
	}
	return nil
}

func decodeKey(cfg map[string]json.RawMessage, key string, v any) error {
	raw, ok := cfg[key]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func encodeKey(cfg map[string]json.RawMessage, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	cfg[key] = raw
	return nil
}
