package proxy

import "testing"

// TestFrameScanStatus: the fast relay learns the transaction status of
// ReadyForQuery wherever the reads split it.
func TestFrameScanStatus(t *testing.T) {
	stream := []byte("C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05T")
	for cut := 0; cut <= len(stream); cut++ {
		var s frameScan
		var status byte
		var ready bool
		for _, chunk := range [][]byte{stream[:cut], stream[cut:]} {
			r, err := s.scan(chunk, 1<<20, false)
			if err != nil {
				t.Fatal(err)
			}
			ready = ready || r.ready
			if r.status != 0 {
				status = r.status
			}
		}
		if !ready || status != 'T' {
			t.Errorf("cut at %d: ready %v, status %q; want ready, 'T'", cut, ready, status)
		}
	}
}
