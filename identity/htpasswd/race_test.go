//go:build race

package htpasswd

func init() { slowCost = 6 } // see rightHash
