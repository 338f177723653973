package media

import (
	"strings"
	"testing"
)

func TestOSSRegionOfEndpoint(t *testing.T) {
	tests := []struct {
		endpoint   string
		region     string
		wantRegion string
	}{
		{endpoint: "https://oss-cn-hangzhou.aliyuncs.com", wantRegion: "cn-hangzhou"},
		{endpoint: "oss-cn-beijing.aliyuncs.com", wantRegion: "cn-beijing"},
		{endpoint: "https://oss-cn-hangzhou-internal.aliyuncs.com", wantRegion: "cn-hangzhou"},
		{endpoint: "https://oss-ap-southeast-1.aliyuncs.com:443", wantRegion: "ap-southeast-1"},
		{endpoint: "https://oss-accelerate.aliyuncs.com"},
		{endpoint: "https://oss-accelerate-overseas.aliyuncs.com"},
		{endpoint: "http://127.0.0.1:9000"},
		{endpoint: "https://images.example.com"},
		{endpoint: "https://oss-cn-hangzhou.aliyuncs.com.example.com"},
		{endpoint: "https://images.example.com", region: "cn-shanghai", wantRegion: "cn-shanghai"},
		{endpoint: "https://oss-cn-hangzhou.aliyuncs.com", region: "cn-shanghai", wantRegion: "cn-shanghai"},
	}
	for _, tt := range tests {
		t.Run(tt.endpoint+" "+tt.region, func(t *testing.T) {
			s, err := NewOSS(OSSConfig{Endpoint: tt.endpoint, Bucket: "aih-images", AccessKeyID: "id", AccessKeySecret: "secret", Region: tt.region})
			if err != nil {
				t.Fatal(err)
			}
			if s.region != tt.wantRegion {
				t.Errorf("region = %q, want %q", s.region, tt.wantRegion)
			}
			if want := `Region:"` + tt.wantRegion + `"`; !strings.Contains(s.String(), want) {
				t.Errorf("String() = %s, want it to contain %s", s.String(), want)
			}
		})
	}
}
