#!/bin/sh
# minio-init (image minio/mc): the evidence bucket with Object Lock (which turns versioning on) and a
# user that may use only that bucket (the aws_default connection's credentials). Safe to run again.
set -eu

until mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  echo "waiting for MinIO"; sleep 1
done

mc mb --ignore-existing --with-lock "local/$ATTESTLY_EVIDENCE_BUCKET"
mc version info "local/$ATTESTLY_EVIDENCE_BUCKET"

cat > /tmp/attestly-evidence-policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:*"],
     "Resource": ["arn:aws:s3:::$ATTESTLY_EVIDENCE_BUCKET", "arn:aws:s3:::$ATTESTLY_EVIDENCE_BUCKET/*"]},
    {"Effect": "Deny", "Action": ["s3:DeleteBucket", "s3:PutBucketObjectLockConfiguration",
                                  "s3:PutBucketVersioning", "s3:BypassGovernanceRetention"],
     "Resource": ["arn:aws:s3:::$ATTESTLY_EVIDENCE_BUCKET", "arn:aws:s3:::$ATTESTLY_EVIDENCE_BUCKET/*"]}
  ]
}
JSON
mc admin user add local "$ATTESTLY_S3_ACCESS_KEY" "$ATTESTLY_S3_SECRET_KEY"
mc admin policy create local attestly-evidence /tmp/attestly-evidence-policy.json
mc admin policy attach local attestly-evidence --user "$ATTESTLY_S3_ACCESS_KEY" 2>/dev/null || true
echo "bucket $ATTESTLY_EVIDENCE_BUCKET ready (Object Lock), user $ATTESTLY_S3_ACCESS_KEY limited to it"
