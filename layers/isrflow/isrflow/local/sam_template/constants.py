"""Names and defaults the SAM template reader shares: local account/region, resource types, SAM defaults."""

LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"
LOCAL_PARTITION = "aws"

SAM_FUNCTION = "AWS::Serverless::Function"
SAM_LAYER = "AWS::Serverless::LayerVersion"
SAM_STATE_MACHINE = "AWS::Serverless::StateMachine"
CFN_STATE_MACHINE = "AWS::StepFunctions::StateMachine"
CFN_ESM = "AWS::Lambda::EventSourceMapping"
SQS_QUEUE = "AWS::SQS::Queue"
S3_BUCKET = "AWS::S3::Bucket"
ECS_TASK_DEFINITION = "AWS::ECS::TaskDefinition"

# SAM / Lambda defaults used when the template says nothing.
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3
DEFAULT_SQS_BATCH_SIZE = 10
DEFAULT_VISIBILITY_TIMEOUT_S = 30
DEFAULT_RETENTION_S = 345600
