//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// pendingBytes is only implemented on Linux; elsewhere bytes sent after an
// SSLRequest reach the TLS handshake, which fails on them.
func pendingBytes(net.Conn) bool { return false }

func isConnReset(error) bool { return false }

var syscallEMFILE = errors.New("too many open files")
