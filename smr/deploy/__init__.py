"""Deploying smr to AWS Lambda: the package, the IAM policy, the AWS calls and a template."""
