package policy

import (
	"fmt"
	"os"
	"strings"
)

// SecretRef says where one injected credential comes from.
type SecretRef struct {
	Env  string // environment variable, or
	File string // file path, already resolved against the policy file's directory
}

func (r SecretRef) String() string {
	if r.Env != "" {
		return "environment variable " + r.Env
	}
	return "file " + r.File
}

// SecretSource reads a credential. Load calls it once per injected header.
type SecretSource func(SecretRef) (string, error)

// EnvAndFiles reads credentials from the process environment and the file system. An unset or
// empty variable or file is an error: a host must not be called without its credential.
func EnvAndFiles(ref SecretRef) (string, error) {
	if ref.Env != "" {
		v, ok := os.LookupEnv(ref.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", ref.Env)
		}
		return v, nil
	}
	b, err := os.ReadFile(ref.File)
	if err != nil {
		return "", fmt.Errorf("cannot read credential file: %v", err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("credential file %s is empty", ref.File)
	}
	return v, nil
}

// Placeholders stands in for credentials where none must be read (lint, offline checks).
func Placeholders(ref SecretRef) (string, error) { return "<" + ref.String() + ">", nil }
