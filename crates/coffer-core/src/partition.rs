//! AWS partitions (`aws`, `aws-cn`, `aws-us-gov`, ...): which one a region belongs to, and
//! every ARN Coffer writes, built in the partition of the region it is written for.
//!
//! The rule is botocore's `partitions.json` (each partition's `regionRegex`), written out by
//! hand so this crate needs no regex: a region that none matches is in `aws`, as the SDKs
//! decide. IAM and STS are global: their ARNs take the partition of the region the request
//! was signed for.

use std::fmt;

/// One of AWS's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
    AwsEusc,
}

impl Partition {
    /// Every partition, in `partitions.json`'s order.
    pub const ALL: [Partition; 8] = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
        Partition::AwsEusc,
    ];

    /// The partition `region` belongs to: `cn-north-1` is in `aws-cn`, `us-gov-west-1` in
    /// `aws-us-gov`, `us-east-1` (and anything unknown) in `aws`.
    pub fn of_region(region: &str) -> Partition {
        // Every regionRegex ends `-\w+-\d+`: the last two parts; what comes before decides.
        // Split from the right without allocating: this runs for every ARN Coffer writes.
        let mut parts = region.rsplitn(3, '-');
        let (Some(number), Some(word), Some(head)) = (parts.next(), parts.next(), parts.next())
        else {
            return Partition::Aws;
        };
        let is_word =
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let is_number = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
        if !is_word || !is_number {
            return Partition::Aws;
        }
        match head {
            "cn" => Partition::AwsCn,
            "us-gov" => Partition::AwsUsGov,
            "us-iso" => Partition::AwsIso,
            "us-isob" => Partition::AwsIsoB,
            "eu-isoe" => Partition::AwsIsoE,
            "us-isof" => Partition::AwsIsoF,
            "eusc-de" => Partition::AwsEusc,
            _ => Partition::Aws,
        }
    }

    /// The partition's name as ARNs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
            Partition::AwsEusc => "aws-eusc",
        }
    }

    /// The partition an ARN names (`arn:<partition>:...`); `None` for anything else.
    pub fn of_arn(arn: &str) -> Option<Partition> {
        let name = arn.strip_prefix("arn:")?.split(':').next()?;
        Partition::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// `arn:<partition>:<service>:<region>:<account>:<resource>`: the one place Coffer
    /// writes an ARN's head. Global services (IAM, STS) pass an empty region.
    pub fn arn(self, service: &str, region: &str, account: &str, resource: &str) -> String {
        format!("arn:{}:{service}:{region}:{account}:{resource}", self.as_str())
    }

    /// `arn` with its partition replaced by this one (an ARN of another shape as it is):
    /// an IAM or STS ARN, global and made before the request's region was known, as the
    /// request's partition shows it.
    pub fn rewrite(self, arn: &str) -> String {
        match Partition::of_arn(arn) {
            Some(p) if p != self => {
                let rest = &arn["arn:".len() + p.as_str().len()..];
                format!("arn:{}{rest}", self.as_str())
            }
            _ => arn.to_string(),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every region botocore's `partitions.json` lists, with its partition.
    const LISTED: &[(&str, &str)] = &[
        ("af-south-1", "aws"),
        ("ap-east-1", "aws"),
        ("ap-east-2", "aws"),
        ("ap-northeast-1", "aws"),
        ("ap-northeast-2", "aws"),
        ("ap-northeast-3", "aws"),
        ("ap-south-1", "aws"),
        ("ap-south-2", "aws"),
        ("ap-southeast-1", "aws"),
        ("ap-southeast-2", "aws"),
        ("ap-southeast-3", "aws"),
        ("ap-southeast-4", "aws"),
        ("ap-southeast-5", "aws"),
        ("ap-southeast-6", "aws"),
        ("ap-southeast-7", "aws"),
        ("ca-central-1", "aws"),
        ("ca-west-1", "aws"),
        ("eu-central-1", "aws"),
        ("eu-central-2", "aws"),
        ("eu-north-1", "aws"),
        ("eu-south-1", "aws"),
        ("eu-south-2", "aws"),
        ("eu-west-1", "aws"),
        ("eu-west-2", "aws"),
        ("eu-west-3", "aws"),
        ("il-central-1", "aws"),
        ("me-central-1", "aws"),
        ("me-south-1", "aws"),
        ("mx-central-1", "aws"),
        ("sa-east-1", "aws"),
        ("us-east-1", "aws"),
        ("us-east-2", "aws"),
        ("us-west-1", "aws"),
        ("us-west-2", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("eusc-de-east-1", "aws-eusc"),
        ("us-iso-east-1", "aws-iso"),
        ("us-iso-west-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("us-isob-west-1", "aws-iso-b"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("us-isof-east-1", "aws-iso-f"),
        ("us-isof-south-1", "aws-iso-f"),
        ("us-gov-east-1", "aws-us-gov"),
        ("us-gov-west-1", "aws-us-gov"),
    ];

    #[test]
    fn every_listed_region_is_in_its_partition() {
        for (region, partition) in LISTED {
            assert_eq!(Partition::of_region(region).as_str(), *partition, "{region}");
        }
    }

    #[test]
    fn regions_not_yet_listed_follow_the_pattern() {
        assert_eq!(Partition::of_region("cn-south-2"), Partition::AwsCn);
        assert_eq!(Partition::of_region("us-gov-central-3"), Partition::AwsUsGov);
        assert_eq!(Partition::of_region("eu-west-9"), Partition::Aws);
    }

    #[test]
    fn what_matches_no_pattern_is_aws() {
        for odd in
            ["", "cn", "cn-north", "cn-north-x", "us-gov-1", "cn--1", "local", "aws-cn-global"]
        {
            assert_eq!(Partition::of_region(odd), Partition::Aws, "{odd:?}");
        }
    }

    #[test]
    fn arns_are_written_in_the_partition() {
        let p = Partition::of_region("cn-north-1");
        assert_eq!(
            p.arn("kms", "cn-north-1", "111122223333", "key/k"),
            "arn:aws-cn:kms:cn-north-1:111122223333:key/k"
        );
        assert_eq!(
            Partition::AwsUsGov.arn("iam", "", "111122223333", "root"),
            "arn:aws-us-gov:iam::111122223333:root"
        );
    }

    #[test]
    fn an_arn_names_its_partition() {
        assert_eq!(Partition::of_arn("arn:aws-cn:iam::1:root"), Some(Partition::AwsCn));
        assert_eq!(Partition::of_arn("arn:aws:iam::1:root"), Some(Partition::Aws));
        assert_eq!(Partition::of_arn("arn:aws-moon:iam::1:root"), None);
        assert_eq!(Partition::of_arn("AIDAEXAMPLE"), None);
    }

    #[test]
    fn rewrite_changes_only_the_partition() {
        let arn = "arn:aws:sts::111122223333:assumed-role/r/s";
        assert_eq!(Partition::AwsCn.rewrite(arn), "arn:aws-cn:sts::111122223333:assumed-role/r/s");
        assert_eq!(Partition::Aws.rewrite(&Partition::AwsCn.rewrite(arn)), arn);
        assert_eq!(Partition::AwsCn.rewrite("111122223333"), "111122223333");
    }
}
