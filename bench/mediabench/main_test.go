package main

import (
	"testing"
)

func TestParseRuns(t *testing.T) {
	cases := []struct {
		name      string
		output    string
		wantRuns  int
		wantRatio float64
		wantErr   bool
	}{
		{
			name: "two runs among other lines",
			output: "goos: linux\n" +
				"BenchmarkMediaVersusServeFile-2   \t     300\t  30895649 ns/op\t      2031 media-MB/s\t      1934 media-req/s\t   1049865 object-bytes\t         0.8673 ratio\t      2341 servefile-MB/s\t      2230 servefile-req/s\n" +
				"BenchmarkMediaVersusServeFile-2   \t     300\t  30895649 ns/op\t      2000 media-MB/s\t      1900 media-req/s\t   1049865 object-bytes\t         0.9 ratio\t      2222 servefile-MB/s\t      2100 servefile-req/s\n" +
				"PASS\nok  \tgithub.com/aihigress/aihigress/internal/media\t2.530s\n",
			wantRuns:  2,
			wantRatio: 0.8673,
		},
		{
			name:    "metric missing",
			output:  "BenchmarkMediaVersusServeFile-2 300 100 ns/op 2031 media-MB/s\n",
			wantErr: true,
		},
		{
			name:    "no benchmark lines",
			output:  "PASS\n",
			wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := parseRuns([]byte(tc.output))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseRuns succeeded with %d runs, want an error", len(runs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != tc.wantRuns {
				t.Fatalf("got %d runs, want %d", len(runs), tc.wantRuns)
			}
			if runs[0].ratio != tc.wantRatio {
				t.Errorf("first ratio = %v, want %v", runs[0].ratio, tc.wantRatio)
			}
			if runs[0].objectBytes != 1049865 || runs[0].bareMBps != 2341 || runs[0].mediaRPS != 1934 {
				t.Errorf("first run = %+v, want the metrics of the first line", runs[0])
			}
		})
	}
}
