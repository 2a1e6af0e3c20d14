//go:build !linux

package oidctest

import "syscall"

func dieWithParent() *syscall.SysProcAttr { return nil }
