package worker

import (
	"testing"
	"time"
)

func TestSDKOptions(t *testing.T) {
	tests := []struct {
		name              string
		opts              Options
		defaultActivities int
		wantActivities    int
		wantWorkflowPoll  int
		wantActivityPoll  int
		wantHeartbeat     time.Duration
	}{
		{name: "zero options", defaultActivities: 100, wantActivities: 100, wantHeartbeat: 800 * time.Millisecond},
		{
			name:              "every option",
			opts:              Options{MaxConcurrentActivities: 7, WorkflowTaskPollers: 4, ActivityTaskPollers: 3, HeartbeatThrottle: time.Second},
			defaultActivities: 1000,
			wantActivities:    7, wantWorkflowPoll: 4, wantActivityPoll: 3, wantHeartbeat: time.Second,
		},
		{
			name:              "negative values",
			opts:              Options{MaxConcurrentActivities: -1, WorkflowTaskPollers: -2, ActivityTaskPollers: -3, HeartbeatThrottle: -time.Second},
			defaultActivities: 20,
			wantActivities:    20, wantHeartbeat: 800 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sdkOptions(tt.opts, tt.defaultActivities)
			if got.MaxConcurrentActivityExecutionSize != tt.wantActivities {
				t.Errorf("MaxConcurrentActivityExecutionSize = %d, want %d", got.MaxConcurrentActivityExecutionSize, tt.wantActivities)
			}
			if got.MaxConcurrentLocalActivityExecutionSize != tt.wantActivities {
				t.Errorf("MaxConcurrentLocalActivityExecutionSize = %d, want %d", got.MaxConcurrentLocalActivityExecutionSize, tt.wantActivities)
			}
			if got.MaxConcurrentWorkflowTaskPollers != tt.wantWorkflowPoll {
				t.Errorf("MaxConcurrentWorkflowTaskPollers = %d, want %d", got.MaxConcurrentWorkflowTaskPollers, tt.wantWorkflowPoll)
			}
			if got.MaxConcurrentActivityTaskPollers != tt.wantActivityPoll {
				t.Errorf("MaxConcurrentActivityTaskPollers = %d, want %d", got.MaxConcurrentActivityTaskPollers, tt.wantActivityPoll)
			}
			if got.MaxHeartbeatThrottleInterval != tt.wantHeartbeat || got.DefaultHeartbeatThrottleInterval != tt.wantHeartbeat {
				t.Errorf("heartbeat throttle = %s max, %s default, want %s", got.MaxHeartbeatThrottleInterval, got.DefaultHeartbeatThrottleInterval, tt.wantHeartbeat)
			}
		})
	}
}
